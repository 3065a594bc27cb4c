"""Reading VCF/BCF (or standard input) with pysam: ``Variant`` values with their records, clear errors.

Positions: the VCF's POS is 1-based; ``Variant.pos1`` keeps it and ``Variant.pos0``
gives the 0-based base. Records are numbered in input order (``Variant.index``).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pysam

from caduceus_cli.errors import InputFileError
from caduceus_cli.io.variant import Variant

log = logging.getLogger(__name__)


def variant_of(rec: pysam.VariantRecord, index: int) -> Variant:
    """The ``Variant`` of a pysam record (alleles as written; ID None for '.')."""
    return Variant(rec.chrom, rec.pos, rec.ref or "", tuple(rec.alts or ()), rec.id, index)


class VariantReader:
    """Iterate (Variant, record) pairs of a VCF/BCF (or '-' for stdin) with clear errors."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        if self.path != "-" and not Path(self.path).exists():
            raise InputFileError(f"{self.path}: no such variant file")
        self._proc: subprocess.Popen | None = None
        try:
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
        self._n = 0
        self._last = "the header"

    def __iter__(self) -> Iterator[tuple[Variant, pysam.VariantRecord]]:
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
