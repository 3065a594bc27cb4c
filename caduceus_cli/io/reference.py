"""Reference genome access: windows of sequence around 0-based positions, padded with N.

Backed by ``pysam.FastaFile`` (plain or bgzip FASTA; the .fai/.gzi index is built
when missing and the folder is writable). Contig names of the variants are
reconciled with the reference once per contig (``chr1`` <-> ``1``, ``chrM`` <->
``MT``, plus a user rename table).
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from caduceus_cli.errors import InputFileError
from caduceus_cli.io.coords import Interval0

log = logging.getLogger(__name__)

_MITO = {"chrM": "MT", "MT": "chrM", "chrMT": "MT", "M": "MT"}


@dataclass(frozen=True)
class Window:
    """Sequence of ``interval`` (upper-case, IUPAC codes as N); ``padded`` bases lie beyond a contig end."""

    interval: Interval0
    seq: str
    padded: int


def read_rename_table(path: str | os.PathLike) -> dict[str, str]:
    """Two whitespace-separated columns per line: name in the variants, name in the reference."""
    table: dict[str, str] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the rename table ({exc.strerror})") from exc
    for i, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputFileError(
                f"{path}:{i}: expected two columns (variant contig, reference contig), got {len(parts)}"
            )
        table[parts[0]] = parts[1]
    return table


_IUPAC_TO_N = str.maketrans({c: "N" for c in "RYKMSWBDHVUrykmswbdhvu"})


class Reference:
    """A reference FASTA opened for random access."""

    def __init__(self, path: str | os.PathLike, renames: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputFileError(f"{self.path}: reference FASTA not found; pass --ref with a FASTA (plain or bgzip)")
        fai = Path(str(self.path) + ".fai")
        if not fai.exists() and not os.access(self.path.parent, os.W_OK):
            raise InputFileError(
                f"{self.path}: no .fai index and the folder is not writable; run `samtools faidx {self.path}` "
                "where you can write, or copy the FASTA to a writable folder"
            )
        import pysam  # imported here: pretraining on machines without pysam uses iter_fasta only

        try:
            self._fasta = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as exc:
            hint = ""
            if str(self.path).endswith(".gz"):
                hint = f"; a compressed FASTA must be bgzip-compressed: zcat {self.path} | bgzip > ref.fa.gz"
            raise InputFileError(f"{self.path}: cannot open or index the FASTA ({exc}){hint}") from exc
        self.lengths = dict(zip(self._fasta.references, self._fasta.lengths, strict=True))
        self.renames = dict(renames or {})
        self._resolved: dict[str, str | None] = {}

    def close(self) -> None:
        self._fasta.close()

    def describe(self) -> str:
        """The FASTA's file name, as messages name it."""
        return self.path.name

    def resolve(self, chrom: str) -> str | None:
        """The reference name of a variant contig, or None if the reference lacks it."""
        if chrom in self._resolved:
            return self._resolved[chrom]
        candidates = [self.renames.get(chrom, chrom), chrom]
        if chrom.startswith("chr"):
            candidates.append(chrom[3:])
        else:
            candidates.append("chr" + chrom)
        if chrom in _MITO:
            candidates += [_MITO[chrom], "chrM", "MT"]
        found = next((c for c in candidates if c in self.lengths), None)
        if found and found != chrom:
            log.info("contig %s of the variants is %s in %s", chrom, found, self.path.name)
        self._resolved[chrom] = found
        return found

    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Upper-case sequence of [start, end) (0-based) of a reference contig, clipped to the contig."""
        length = self.lengths[chrom]
        s, e = max(0, start), min(length, end)
        if e <= s:
            return ""
        return self._fasta.fetch(chrom, s, e).upper().translate(_IUPAC_TO_N)

    def region(self, iv: Interval0, where: str) -> str:
        """The sequence of a BED interval, its contig reconciled; errors name ``where`` (file and line)."""
        chrom = self.resolve(iv.chrom)
        if chrom is None:
            raise InputFileError(
                f"{where}: region {iv.label()}: contig {iv.chrom} is not in {self.describe()} (use --rename-chrs)"
            )
        if iv.end > self.lengths[chrom]:
            raise InputFileError(
                f"{where}: region {iv.label()} runs past the end of {chrom} ({self.lengths[chrom]:,} bp)"
            )
        return self.fetch(chrom, iv.start, iv.end)

    def window(self, chrom: str, start: int, length: int) -> Window:
        """``length`` bases from 0-based ``start``; positions outside the contig become N."""
        contig_len = self.lengths[chrom]
        left = max(0, -start)
        right = max(0, start + length - contig_len)
        core = self.fetch(chrom, start, start + length)
        seq = "N" * left + core + "N" * right
        return Window(Interval0(chrom, start, start + length), seq, left + right)


def iter_fasta(path: str) -> Iterator[tuple[str, str]]:
    """(name, sequence) of each record of a FASTA file, streamed (plain, gzip or bgzip)."""
    try:
        import pysam
    except ImportError:
        pysam = None
    if pysam is not None:
        try:
            with pysam.FastxFile(path) as fh:
                for rec in fh:
                    yield rec.name, rec.sequence
            return
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{path}: not a readable FASTA ({exc})") from exc
    import pyfaidx  # GPU machines without pysam: plain FASTA through pyfaidx

    if path.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            head = fh.read(1)
        raise InputFileError(
            f"{path}: compressed FASTA needs pysam here; decompress it first (gzip -dc)" if head else f"{path}: empty"
        )
    fa = pyfaidx.Fasta(path, as_raw=True, sequence_always_upper=False, rebuild=False)
    for name in fa.keys():
        yield name, fa[name][:]
