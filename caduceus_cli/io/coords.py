"""Coordinate types. VCF positions are 1-based (``pos1``); everything else is 0-based half-open."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from caduceus_cli.errors import InputFileError


@dataclass(frozen=True)
class Interval0:
    """A half-open interval [start, end) in 0-based reference coordinates (BED's convention)."""

    chrom: str
    start: int
    end: int
    name: str | None = None

    def __len__(self) -> int:
        return self.end - self.start

    def label(self) -> str:
        """``name`` if set, else ``chrom:start1-end`` (1-based inclusive, as genome browsers show it)."""
        return self.name or f"{self.chrom}:{self.start + 1}-{self.end}"


def read_bed(path: str) -> list[Interval0]:
    """Intervals of a BED file (plain or gzip; optional 4th column = name), in file order."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{path}: no such BED file")
    opener = gzip.open if path.endswith(".gz") else open
    out = []
    with opener(path, "rt") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t")
            try:
                iv = Interval0(f[0], int(f[1]), int(f[2]), f[3] if len(f) > 3 and f[3] else None)
            except (IndexError, ValueError) as exc:
                raise InputFileError(f"{path}:{i}: expected tab-separated chrom, start, end (0-based BED)") from exc
            if iv.start < 0 or iv.end <= iv.start:
                raise InputFileError(f"{path}:{i}: interval {f[0]}:{f[1]}-{f[2]} is empty or negative")
            out.append(iv)
    return out
