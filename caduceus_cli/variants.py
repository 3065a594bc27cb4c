"""Variant IO: read VCF/BCF (or stdin) with pysam, write annotated VCF/BCF/TSV atomically.

Positions: the VCF's POS is 1-based; the scorer converts it to 0-based once
(``pos0``). Every input record is written, in input order.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pysam

from caduceus_cli.errors import InputFileError

log = logging.getLogger(__name__)

INFO_FIELDS = {
    "CAD_LLR": ("A", "Float", "Caduceus zero-shot masked log-likelihood ratio log P(alt) - log P(ref) at the variant "
                "position(s), both strands averaged; SNVs and MNVs only (sum over positions)"),
    "CAD_COS": ("A", "Float", "Caduceus cosine distance between RC-averaged ref and alt embeddings, mean-pooled "
                "around the variant (indels aligned on the left anchor)"),
    "CAD_FLAG": (".", "String", "Caduceus: why an ALT was not scored or needs care (REF_MISMATCH, CONTIG_MISSING, "
                 "EDGE_PADDED, N_IN_WINDOW, SYMBOLIC, TOO_LONG)"),
    "CAD_PROB": ("A", "Float", "Caduceus probe probability that the variant is causal"),
}


def allele_class(ref: str, alt: str) -> str:
    """'snv', 'mnv', 'indel' or 'symbolic' ('<DEL>', '*', breakends, missing, non-ACGTN)."""
    if not alt or alt in (".", "*") or alt.startswith("<") or "[" in alt or "]" in alt:
        return "symbolic"
    if not set(alt.upper()) <= set("ACGTN") or not set(ref.upper()) <= set("ACGTN"):
        return "symbolic"
    if len(ref) == len(alt):
        return "snv" if len(ref) == 1 else "mnv"
    return "indel"


def output_format(path: str, fmt: str | None) -> str:
    """One of 'v', 'z', 'b', 'tsv' from ``-O`` or the file name."""
    if fmt:
        if fmt not in ("v", "z", "b", "tsv"):
            raise InputFileError(f"-O {fmt}: expected v (VCF), z (bgzip VCF), b (BCF) or tsv")
        return fmt
    name = str(path).lower()
    if name == "-":
        return "v"
    if name.endswith((".tsv", ".tsv.gz", ".txt")):
        return "tsv"
    if name.endswith((".vcf.gz", ".vcf.bgz")):
        return "z"
    if name.endswith(".bcf"):
        return "b"
    return "v"


class VariantReader:
    """Iterate records of a VCF/BCF (or '-' for stdin) with clear errors."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        if self.path != "-" and not Path(self.path).exists():
            raise InputFileError(f"{self.path}: no such variant file")
        self._proc: subprocess.Popen | None = None
        try:
            self.vf = pysam.VariantFile(self.path, "r")
        except NotImplementedError:
            # plain gzip (not bgzip): htslib cannot seek in it, so read it as a decompressed stream
            log.warning("%s is gzip- but not bgzip-compressed; reading it as a stream (bgzip it to index it)", self.path)
            self._proc = subprocess.Popen(["gzip", "-dc", self.path], stdout=subprocess.PIPE)
            try:
                self.vf = pysam.VariantFile(self._proc.stdout)
            except (OSError, ValueError) as exc:
                raise InputFileError(f"{self.path}: not a readable VCF ({exc}); check it with `zcat {self.path} | head`") from exc
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{self.path}: not a readable VCF/BCF ({exc}); check it with `bcftools view -h`") from exc
        self.header = self.vf.header
        self._n = 0
        self._last = "the header"

    def records(self) -> Iterator[pysam.VariantRecord]:
        it = iter(self.vf)
        while True:
            try:
                rec = next(it)
            except StopIteration:
                return
            except (OSError, ValueError) as exc:
                raise InputFileError(
                    f"{self.path}: record {self._n + 1} (after {self._last}) is unreadable ({exc}); "
                    "the file may be truncated or malformed: check it with `bcftools view`"
                ) from exc
            self._n += 1
            self._last = f"{rec.chrom}:{rec.pos}"
            yield rec

    def close(self) -> None:
        self.vf.close()
        if self._proc is not None:
            self._proc.stdout.close()
            if self._proc.wait() not in (0, -13) and self._n:  # -13: SIGPIPE after an early stop
                raise InputFileError(f"{self.path}: gzip stream is truncated or corrupt (gzip -t {self.path})")


def add_header_lines(header: pysam.VariantHeader, provenance: dict[str, str], with_prob: bool) -> None:
    for key, (number, typ, desc) in INFO_FIELDS.items():
        if key == "CAD_PROB" and not with_prob:
            continue
        if key in header.info:
            header.info.remove_header(key)
        header.info.add(key, number, typ, desc)
    for key, value in provenance.items():
        header.add_line(f"##caduceus_{key}={value}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicOutput:
    """A temporary file beside the target, renamed into place on success only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stdout = path == "-"
        if self.stdout:
            self.tmp = "-"
        else:
            target = Path(path)
            if not target.parent.exists():
                raise InputFileError(f"{path}: output folder {target.parent} does not exist")
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            os.close(fd)
            self.tmp = tmp

    def commit(self) -> None:
        if not self.stdout:
            os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if not self.stdout and os.path.exists(self.tmp):
            os.unlink(self.tmp)


class VcfWriter:
    """Annotated VCF/BCF output; bgzip VCF is indexed (tabix .tbi) and BCF (.csi) after the rename.

    VCF text is htslib's own formatting of the header and of each record (so input
    headers without ``##contig`` lines, common in the wild, pass through unchanged);
    BCF needs every contig declared, so the reference's contigs are added first.
    """

    def __init__(self, path: str, fmt: str, header: pysam.VariantHeader, contigs: dict[str, int] | None = None) -> None:
        self.out = AtomicOutput(path)
        self.fmt = fmt
        self.vf = None
        self.fh = None
        if fmt == "b":
            for name, length in (contigs or {}).items():
                if name not in header.contigs:
                    header.contigs.add(name, length=length)
            self.vf = pysam.VariantFile(self.out.tmp, "wb", header=header)
        elif self.out.stdout:
            self.fh = sys.stdout
        elif fmt == "z":
            self.fh = pysam.BGZFile(self.out.tmp, "wb")
        else:
            self.fh = open(self.out.tmp, "w")
        if self.fh is not None:
            self._put(str(header))

    def _put(self, text: str) -> None:
        self.fh.write(text.encode() if isinstance(self.fh, pysam.BGZFile) else text)

    def write(self, rec: pysam.VariantRecord, llr: list, cos: list, flags: list[str], prob: list | None) -> None:
        if rec.alts:
            rec.info["CAD_LLR"] = tuple(llr)
            rec.info["CAD_COS"] = tuple(cos)
            if prob is not None:
                rec.info["CAD_PROB"] = tuple(prob)
        if flags:
            rec.info["CAD_FLAG"] = tuple(flags)
        if self.vf is not None:
            try:
                self.vf.write(rec)
            except OSError as exc:
                raise InputFileError(f"{rec.chrom}:{rec.pos}: cannot write BCF ({exc}); declare the contig in the header or write VCF") from exc
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
        if self.out.stdout:
            return
        if self.fmt == "z":
            pysam.tabix_index(self.out.path, preset="vcf", force=True, keep_original=True)
        elif self.fmt == "b":
            pysam.tabix_index(self.out.path, preset="bcf", csi=True, force=True, keep_original=True)


TSV_COLUMNS = ["chrom", "pos", "id", "ref", "alt", "CAD_LLR", "CAD_COS", "CAD_FLAG"]


class TsvWriter:
    """One row per ALT (a record with no ALT gets one row with alt '.')."""

    def __init__(self, path: str, provenance: dict[str, str], with_prob: bool) -> None:
        self.out = AtomicOutput(path)
        if self.out.stdout:
            self.fh = sys.stdout
        elif path.endswith(".gz"):
            self.fh = gzip.open(self.out.tmp, "wt", newline="")
        else:
            self.fh = open(self.out.tmp, "w", newline="")
        for key, value in provenance.items():
            self.fh.write(f"# caduceus_{key}={value}\n")
        self.columns = TSV_COLUMNS + (["CAD_PROB"] if with_prob else [])
        self.w = csv.writer(self.fh, delimiter="\t", lineterminator="\n")
        self.w.writerow(self.columns)

    def write(self, rec: pysam.VariantRecord, llr: list, cos: list, flags: list[str], prob: list | None) -> None:
        fmt = lambda x: "." if x is None else f"{x:.6g}"  # noqa: E731
        alts = rec.alts or (".",)
        for i, alt in enumerate(alts):
            row = [rec.chrom, rec.pos, rec.id or ".", rec.ref, alt,
                   fmt(llr[i]) if rec.alts else ".", fmt(cos[i]) if rec.alts else ".", ",".join(flags) or "."]
            if prob is not None:
                row.append(fmt(prob[i]) if rec.alts else ".")
            self.w.writerow(row)

    def close(self, ok: bool) -> None:
        if self.fh is not sys.stdout:
            self.fh.close()
        else:
            self.fh.flush()
        if ok:
            self.out.commit()
        else:
            self.out.abort()
