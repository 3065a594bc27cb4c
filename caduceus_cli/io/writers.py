"""Annotated outputs of score-vcf: VCF / bgzip VCF (+ .tbi) / BCF (+ .csi) / TSV, written atomically.

A writer takes each input record with its ``Annotation`` (one value per ALT) and never
changes the caller's record: VCF output writes an annotated copy.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import sys
from dataclasses import dataclass

import pysam

from caduceus_cli.choices import OutputType, choice
from caduceus_cli.errors import InputFileError
from caduceus_cli.io.atomic import AtomicOutput
from caduceus_cli.io.vcf import htslib_quiet

log = logging.getLogger(__name__)

INFO_FIELDS = {
    "CAD_LLR": (
        "A",
        "Float",
        "Caduceus zero-shot masked log-likelihood ratio log P(alt) - log P(ref) at the variant "
        "position(s), both strands averaged (SNVs, MNVs: sum over positions); indels: pseudo-log-likelihood "
        "difference PLL(alt) - PLL(ref) over the changed bases +/- 3 bp of the left-aligned alleles",
    ),
    "CAD_COS": (
        "A",
        "Float",
        "Caduceus cosine distance between RC-averaged ref and alt embeddings, mean-pooled "
        "around the variant (indels left-aligned)",
    ),
    "CAD_FLAG": (
        ".",
        "String",
        "Caduceus: why an ALT was not scored or needs care (REF_MISMATCH, CONTIG_MISSING, "
        "EDGE_PADDED, N_IN_WINDOW, SYMBOLIC, TOO_LONG)",
    ),
    "CAD_PROB": ("A", "Float", "Caduceus probe probability that the variant is causal"),
}


SCORE_FIELDS = ("CAD_LLR", "CAD_COS", "CAD_PROB")  # per-ALT fields, in output order (CAD_FLAG after COS)


@dataclass(frozen=True)
class Annotation:
    """What score-vcf adds to one record: per-ALT scores (None = not scored; a field that is None as a
    whole is not written) and the record's flags."""

    llr: tuple[float | None, ...] | None
    cos: tuple[float | None, ...] | None
    flags: tuple[str, ...]
    prob: tuple[float | None, ...] | None = None
    extra: tuple[tuple[str, tuple[float | None, ...]], ...] = ()  # (field, per-ALT values): CAD_DELTA*
    alt_flags: tuple[tuple[str, ...], ...] | None = None  # per ALT (TSV rows); None: the record's ``flags``

    def fields(self) -> dict[str, tuple[float | None, ...]]:
        values = {"CAD_LLR": self.llr, "CAD_COS": self.cos, "CAD_PROB": self.prob, **dict(self.extra)}
        return {k: v for k, v in values.items() if v is not None}


def output_format(path: str, fmt: OutputType | str | None) -> OutputType:
    """The output type from ``-O`` or, failing that, the file name."""
    if fmt:
        return choice(OutputType, fmt, "-O")
    name = str(path).lower()
    if name == "-":
        return OutputType.VCF
    if name.endswith((".tsv", ".tsv.gz", ".txt")):
        return OutputType.TSV
    if name.endswith((".vcf.gz", ".vcf.bgz")):
        return OutputType.VCF_GZ
    if name.endswith(".bcf"):
        return OutputType.BCF
    return OutputType.VCF


def add_header_lines(
    header: pysam.VariantHeader,
    provenance: dict[str, str],
    fields: tuple[str, ...],
    extra: tuple[tuple[str, str], ...] = (),
) -> None:
    """Declare CAD_FLAG, the score ``fields`` and ``extra`` (name, description) per-ALT floats and add
    ``##caduceus_KEY=VALUE`` lines after any earlier run's (``header_text`` drops those).

    A field the input already declares with the same Number and Type is kept as declared (htslib
    cannot re-declare an ID in a header it has read); one declared otherwise is an error."""
    declared = [(k, v) for k, v in INFO_FIELDS.items() if k == "CAD_FLAG" or k in fields]
    for key, (number, typ, desc) in declared + [(name, ("A", "Float", desc)) for name, desc in extra]:
        if key not in header.info:
            header.info.add(key, number, typ, desc)
        elif (str(header.info[key].number), header.info[key].type) != (number, typ):
            old = header.info[key]
            raise InputFileError(
                f"INFO/{key} is already declared as Number={old.number},Type={old.type} (caduceus writes "
                f"Number={number},Type={typ}): remove it first, e.g. bcftools annotate -x INFO/{key}"
            )
    for key, value in provenance.items():
        header.add_line(f"##caduceus_{key}={value}")


class VcfWriter:
    """Annotated VCF/BCF output; bgzip VCF is indexed (tabix .tbi) and BCF (.csi) after the rename.

    VCF text is htslib's own formatting of the header and of each record (so input
    headers without ``##contig`` lines, common in the wild, pass through unchanged);
    BCF needs every contig declared, so the reference's contigs are added first.
    """

    def __init__(
        self,
        path: str,
        fmt: OutputType,
        header: pysam.VariantHeader,
        contigs: dict[str, int] | None = None,
        provenance: tuple[str, ...] | None = None,
        clear: tuple[str, ...] = (),
    ) -> None:
        """``provenance``, ``clear``: when a scored file is scored again, this run's provenance keys and the
        earlier run's fields (``header_text``, ``annotated``); BCF keeps the earlier lines (pysam writes its
        header object)."""
        self.out = AtomicOutput(path)
        self.clear = clear
        self.fmt = fmt
        self.vf = None
        self.fh = None
        try:
            if fmt == OutputType.BCF:
                declare_contigs(header, contigs or {})
                self.vf = pysam.VariantFile(self.out.tmp, "wb", header=header)
            elif fmt == OutputType.VCF_GZ:  # bgzip, to a file or (path '-') to standard output
                self.fh = pysam.BGZFile(self.out.tmp, "wb")
            elif self.out.stdout:
                self.fh = sys.stdout
            else:
                self.fh = open(self.out.tmp, "w")
            if self.fh is not None:
                self._put(header_text(header, provenance))
        except OSError as exc:
            self.out.abort()
            raise InputFileError(f"{path}: cannot write ({exc})") from exc

    def _put(self, text: str) -> None:
        self.fh.write(text.encode() if isinstance(self.fh, pysam.BGZFile) else text)

    def write(self, rec: pysam.VariantRecord, ann: Annotation) -> None:
        rec = annotated(rec, ann, self.clear)
        if self.vf is not None:
            try:
                self.vf.write(rec)
            except OSError as exc:
                raise InputFileError(
                    f"{rec.chrom}:{rec.pos}: cannot write BCF ({exc}); declare the contig in the header or write VCF"
                ) from exc
        else:
            self._put(str(rec))

    def close(self, ok: bool) -> None:
        if self.vf is not None:
            self.vf.close()
        elif self.fh is sys.stdout:
            self.fh.flush()
        else:
            self.fh.close()
        if not ok:
            self.out.abort()
            return
        self.out.commit()
        if not self.out.stdout:
            index_output(self.out.path, self.fmt)


def header_text(header: pysam.VariantHeader, provenance: tuple[str, ...] | None = None) -> str:
    """The header as VCF text. ``provenance``: when a scored file is scored again, this run's provenance keys:
    of the ``##caduceus_`` lines only the last one of each of those keys stays (htslib keeps one copy of a
    repeated line, and this run's come after the earlier run's). pysam cannot remove structured header lines
    one at a time, so they go here."""
    if provenance is None:
        return str(header)
    lines = str(header).splitlines(keepends=True)
    last: dict[str, int] = {}
    for i, line in enumerate(lines):
        if line.startswith("##caduceus_"):
            last[line[len("##caduceus_") :].split("=", 1)[0]] = i
    keep = {last[k] for k in provenance if k in last}
    return "".join(x for i, x in enumerate(lines) if not x.startswith("##caduceus_") or i in keep)


def annotated(rec: pysam.VariantRecord, ann: Annotation, clear: tuple[str, ...] = ()) -> pysam.VariantRecord:
    """A copy of ``rec`` with the annotation's INFO fields set and the ``clear`` ones of an earlier run removed
    (the caller's record is not changed)."""
    rec = rec.copy()
    for key in clear:  # an earlier run's fields (``VariantReader.own_keys``): replaced, never mixed
        if key in rec.info:
            del rec.info[key]
    if rec.alts:
        for key, values in ann.fields().items():
            rec.info[key] = values
    if ann.flags:
        rec.info["CAD_FLAG"] = ann.flags
    return rec


def declare_contigs(header: pysam.VariantHeader, contigs: dict[str, int | None]) -> None:
    """Add the reference's contigs the header lacks (BCF needs every contig declared)."""
    for name, length in contigs.items():
        if name not in header.contigs:
            header.contigs.add(name, length=length)


class _UndeclaredContig(Exception):
    pass


def bgzip_vcf_to_bcf(text: str, dest: str) -> None:
    """A (bgzip) VCF file -> BCF at ``dest``, declaring the contigs its records use (BCF needs every one).

    One pass when the header declares every contig the records use (score-vcf's and merge's
    headers carry the reference's). Else the text is first rewritten with the missing ##contig
    lines (htslib cannot translate a record whose contig it only met while parsing: it exits
    the process), and that copy is converted."""
    try:
        _copy_to_bcf(text, dest)
    except _UndeclaredContig:
        declared_text = dest + ".contigs.vcf.gz"
        try:
            _declare_record_contigs(text, declared_text)
            _copy_to_bcf(declared_text, dest)
        finally:
            if os.path.exists(declared_text):
                os.unlink(declared_text)


def _declare_record_contigs(text: str, dest: str) -> None:
    """A bgzip copy of the VCF ``text`` whose header declares every contig its records use."""
    with gzip.open(text, "rt") as fh:
        used = dict.fromkeys(line.split("\t", 1)[0] for line in fh if not line.startswith("#"))
    with pysam.VariantFile(text) as src:  # the header alone: no record is parsed
        header = src.header.copy()
    declare_contigs(header, dict.fromkeys(used))
    with pysam.BGZFile(dest, "wb") as out, gzip.open(text, "rt") as fh:
        out.write(str(header).encode())
        for line in fh:
            if not line.startswith("#"):
                out.write(line.encode())


def _copy_to_bcf(text: str, dest: str) -> None:
    with htslib_quiet():  # an unindexed temporary file
        src = pysam.VariantFile(text)
    with src:
        header = src.header.copy()
        declared = set(header.contigs)
        with pysam.VariantFile(dest, "wb", header=header) as dst:
            for rec in src:
                if rec.chrom not in declared:
                    raise _UndeclaredContig(rec.chrom)
                rec.translate(header)
                dst.write(rec)


def index_output(path: str, fmt: OutputType) -> None:
    """tabix (.tbi) a bgzip VCF, .csi a BCF; other formats have no index. Unsorted records: no index, a warning."""
    if fmt not in (OutputType.VCF_GZ, OutputType.BCF):
        return
    bcf = fmt == OutputType.BCF
    try:
        pysam.tabix_index(path, preset="bcf" if bcf else "vcf", csi=bcf, force=True, keep_original=True)
    except OSError:  # records out of order: the output stands (nothing is lost), without an index
        for ext in (".csi", ".tbi"):
            if os.path.exists(path + ext):
                os.unlink(path + ext)
        log.warning("%s is not indexed: its records are not sorted (bcftools sort, then bcftools index)", path)


class VcfText:
    """VCF text of the header and of annotated records (htslib's own formatting, as ``VcfWriter`` writes)."""

    def __init__(
        self, header: pysam.VariantHeader, provenance: tuple[str, ...] | None = None, clear: tuple[str, ...] = ()
    ) -> None:
        self.header, self.provenance, self.clear = header, provenance, clear  # see ``header_text``, ``annotated``

    def header_text(self) -> str:
        return header_text(self.header, self.provenance)

    def record(self, rec: pysam.VariantRecord, ann: Annotation) -> str:
        return str(annotated(rec, ann, self.clear))


TSV_KEYS = ["chrom", "pos", "id", "ref", "alt"]


def _num(x: float | None) -> str:
    return "." if x is None else f"{x:.6g}"


class TsvText:
    """TSV text: provenance as '# caduceus_' lines and the column names, then one row per ALT (a record with no
    ALT gets one row with alt '.')."""

    def __init__(self, provenance: dict[str, str], fields: tuple[str, ...]) -> None:
        self.provenance = provenance
        self.before = [f for f in ("CAD_LLR", "CAD_COS") if f in fields]  # columns before CAD_FLAG
        self.after = [f for f in fields if f not in self.before]  # CAD_PROB, CAD_DELTA*
        self.columns = TSV_KEYS + self.before + ["CAD_FLAG"] + self.after
        self._fields = self.before + self.after
        self._buf = io.StringIO()  # one csv writer, its buffer emptied for each record
        self._csv = csv.writer(self._buf, delimiter="\t", lineterminator="\n")

    def header_text(self) -> str:
        lines = [f"# caduceus_{key}={value}\n" for key, value in self.provenance.items()]
        return "".join(lines) + self._row(self.columns)

    def record(self, rec: pysam.VariantRecord, ann: Annotation) -> str:
        values = ann.fields()
        self._buf.seek(0)
        self._buf.truncate()
        for i, alt in enumerate(rec.alts or (".",)):  # one row per ALT, into one buffer
            flags = ",".join(ann.alt_flags[i] if ann.alt_flags and rec.alts else ann.flags) or "."
            cells = {f: _num(values[f][i]) if rec.alts else "." for f in self._fields}
            row = [rec.chrom, rec.pos, rec.id or ".", rec.ref, alt, *(cells[f] for f in self.before), flags]
            self._csv.writerow(row + [cells[f] for f in self.after])
        return self._buf.getvalue()

    def _row(self, cells: list) -> str:
        self._buf.seek(0)
        self._buf.truncate()
        self._csv.writerow(cells)
        return self._buf.getvalue()


class TsvWriter:
    """One row per ALT (a record with no ALT gets one row with alt '.'); provenance as '# caduceus_' lines."""

    def __init__(self, path: str, provenance: dict[str, str], fields: tuple[str, ...]) -> None:
        self.out = AtomicOutput(path)
        try:
            if self.out.stdout:
                self.fh = sys.stdout
            elif path.endswith(".gz"):
                self.fh = gzip.open(self.out.tmp, "wt", newline="")
            else:
                self.fh = open(self.out.tmp, "w", newline="")
        except OSError as exc:
            self.out.abort()
            raise InputFileError(f"{path}: cannot write ({exc})") from exc
        self.text = TsvText(provenance, fields)
        self.fh.write(self.text.header_text())

    def write(self, rec: pysam.VariantRecord, ann: Annotation) -> None:
        self.fh.write(self.text.record(rec, ann))

    def close(self, ok: bool) -> None:
        if self.fh is not sys.stdout:
            self.fh.close()
        else:
            self.fh.flush()
        if ok:
            self.out.commit()
        else:
            self.out.abort()
