"""Reading VCF/BCF (or standard input) with pysam: ``Variant`` values with their records, clear errors.

Positions: the VCF's POS is 1-based; ``Variant.pos1`` keeps it and ``Variant.pos0``
gives the 0-based base. Records are numbered in input order (``Variant.index``). With ``regions`` only the records
whose REF span overlaps a region are read (through the .tbi/.csi index when there is one, else by
filtering the stream), each once, in file order, and numbered among themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pysam

from caduceus_cli.errors import InputFileError
from caduceus_cli.io.regions import Regions
from caduceus_cli.io.variant import Variant

OWN_INFO = ("CAD_LLR", "CAD_COS", "CAD_FLAG", "CAD_PROB")  # INFO fields score-vcf writes (and CAD_DELTA*)


def is_own_field(key: str) -> bool:
    """Whether an INFO key is one score-vcf writes (a file scored before has them)."""
    return key in OWN_INFO or key.startswith("CAD_DELTA")


log = logging.getLogger(__name__)


def variant_of(rec: pysam.VariantRecord, index: int) -> Variant:
    """The ``Variant`` of a pysam record (alleles as written; ID None for '.')."""
    return Variant(rec.chrom, rec.pos, rec.ref or "", tuple(rec.alts or ()), rec.id, index)


@contextlib.contextmanager
def htslib_quiet() -> Iterator[None]:
    """No htslib messages while opening a file whose missing index does not matter (htslib looks for one and
    prints an error line when there is none); errors still raise."""
    before = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(before)


def check_text_tail(path: str, header: pysam.VariantHeader) -> None:
    """Raise if an uncompressed VCF visibly ends inside a record (a copy cut short): its last line has no
    line end and fewer columns than the header names. A cut inside the last column is not seen here.
    (bgzip files are checked by htslib's EOF block.)"""
    with open(path, "rb") as fh:
        if fh.read(2) in (b"\x1f\x8b", b"BC"):  # gzip / bgzip / BCF: htslib checks those
            return
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - (1 << 20)))
        tail = fh.read()
    if not tail or tail.endswith(b"\n"):
        return
    last = tail.rsplit(b"\n", 1)[-1]
    if not last.strip():
        return
    columns = 8 + (1 + len(header.samples) if header.samples else 0)
    if not last.startswith(b"#") and last.count(b"\t") + 1 < columns:
        fields = last.split(b"\t")
        where = ":".join(f.decode(errors="replace") for f in fields[:2]) if len(fields) > 1 else "its last line"
        raise InputFileError(
            f"{path}: the last record ({where}) has {len(fields)} of {columns} columns and no line end: the file "
            "is truncated; copy it again (or bgzip + tabix it, which also catches this)"
        )


class VariantReader:
    """Iterate (Variant, record) pairs of a VCF/BCF (or '-' for stdin) with clear errors."""

    def __init__(self, path: str | os.PathLike, regions: Regions | None = None) -> None:
        self.path = str(path)
        self.regions = regions
        if self.path != "-" and not Path(self.path).exists():
            raise InputFileError(f"{self.path}: no such variant file")
        self._proc: subprocess.Popen | None = None
        indexed = any(os.path.exists(self.path + ext) for ext in (".tbi", ".csi"))
        try:
            # htslib looks for an index and prints an error line when there is none (only --regions needs one);
            # with one, its warnings (an index older than the data) stay
            with contextlib.nullcontext() if indexed else htslib_quiet():
                self.vf = pysam.VariantFile(self.path, "r")
        except NotImplementedError:
            # plain gzip (not bgzip): htslib cannot seek in it, so read it as a decompressed stream
            log.warning(
                "%s is gzip- but not bgzip-compressed; reading it as a stream (bgzip it to index it)", self.path
            )
            self._proc = subprocess.Popen(["gzip", "-dc", self.path], stdout=subprocess.PIPE)
            try:
                self.vf = pysam.VariantFile(self._proc.stdout)
            except (OSError, ValueError) as exc:
                raise InputFileError(
                    f"{self.path}: not a readable VCF ({exc}); check it with `zcat {self.path} | head`"
                ) from exc
        except (OSError, ValueError) as exc:
            raise InputFileError(
                f"{self.path}: not a readable VCF/BCF ({exc}); check it with `bcftools view -h`"
            ) from exc
        self.header = self.vf.header
        if self._proc is None and self.path != "-" and Path(self.path).is_file():
            check_text_tail(self.path, self.header)
        # what an earlier caduceus run wrote into this file: its ##caduceus_ lines and CAD_* INFO fields
        self.scored_before = any(r.key.startswith("caduceus_") for r in self.header.records)
        self.own_keys = tuple(k for k in self.header.info if is_own_field(k))
        self._n = 0
        self._last = "the header"

    def _records(self) -> Iterator[pysam.VariantRecord]:
        if self.regions is None:
            return iter(self.vf)
        if self._proc is None and self.path != "-" and self.vf.index is not None:
            return self._fetched()
        log.info("%s has no index: reading it whole for the regions (index it with `tabix -p vcf`)", self.path)
        return (r for r in self.vf if self.regions.overlaps(r.chrom, r.start, max(r.stop, r.start + 1)))

    def _fetched(self) -> Iterator[pysam.VariantRecord]:
        """Records of the merged regions in the index's contig order; a record overlapping two regions once."""
        order = {name: i for i, name in enumerate(self.vf.index)}
        by_contig = self.regions.by_contig()
        missing = sorted(c for c in by_contig if c not in order)
        if missing:
            log.warning("%s has no records on %s: those regions are empty", self.path, ", ".join(missing))
        for chrom in sorted((c for c in by_contig if c in order), key=order.get):
            prev_end = -1
            for iv in by_contig[chrom]:
                for rec in self.vf.fetch(chrom, iv.start, min(iv.end, 2**31 - 1)):
                    if rec.start >= prev_end:  # else it overlapped the previous region and was read there
                        yield rec
                prev_end = iv.end

    def __iter__(self) -> Iterator[tuple[Variant, pysam.VariantRecord]]:
        it = self._records()
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
            variant = variant_of(rec, self._n)
            self._n += 1
            self._last = variant.label()
            yield variant, rec

    def variants(self) -> Iterator[Variant]:
        for variant, _ in self:
            yield variant

    def close(self) -> None:
        self.vf.close()
        if self._proc is not None:
            self._proc.stdout.close()
            if self._proc.wait() not in (0, -13) and self._n:  # -13: SIGPIPE after an early stop
                raise InputFileError(f"{self.path}: gzip stream is truncated or corrupt (gzip -t {self.path})")

    def __enter__(self) -> VariantReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def count_records(path: str) -> int | None:
    """Records in an indexed VCF/BCF, read from its .tbi/.csi index (no pass over the file); None otherwise."""
    if path == "-" or not any(os.path.exists(path + ext) for ext in (".tbi", ".csi")):
        return None
    try:
        import cyvcf2

        vcf = cyvcf2.VCF(path)
        try:
            return int(vcf.num_records)
        finally:
            vcf.close()
    except Exception:  # an index cyvcf2 cannot read: the bar simply has no total
        return None
