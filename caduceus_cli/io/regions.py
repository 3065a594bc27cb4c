"""Regions to score (``--regions chr:start-end,...`` / ``-R regions.bed``), as 0-based half-open intervals.

Region strings are 1-based and inclusive, as samtools and bcftools write them (``22:100-200``
is BED ``22 99 200``); ``22`` alone is the whole contig and ``22:100`` runs from base 100 to the
contig's end. BED files are 0-based half-open already. Both are parsed here, once, into
``Interval0`` values, sorted and merged; a record is in the regions when its REF span overlaps one
(bcftools' rule).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from caduceus_cli.errors import OptionError
from caduceus_cli.io.coords import Interval0, read_bed

CONTIG_END = 2**62  # "to the end of the contig"
_REGION = re.compile(r"^(?P<chrom>[^:]+?)(?::(?P<start>[\d,_]+)(?:-(?P<end>[\d,_]*))?)?$")


def parse_region(text: str) -> Interval0:
    """One ``chr``, ``chr:start`` or ``chr:start-end`` (1-based inclusive) as a 0-based half-open interval."""
    m = _REGION.match(text.strip())
    if not m:
        raise OptionError(f"--regions {text!r}: expected chr, chr:start or chr:start-end (1-based, inclusive)")
    chrom = m["chrom"]
    if m["start"] is None:
        return Interval0(chrom, 0, CONTIG_END)
    start1 = int(m["start"].replace("_", "").replace(",", ""))
    end = int(m["end"].replace("_", "").replace(",", "")) if m["end"] else CONTIG_END
    if start1 < 1 or end < start1:
        raise OptionError(f"--regions {text!r}: start must be >= 1 and end >= start (1-based, inclusive)")
    return Interval0(chrom, start1 - 1, end)


def merge_intervals(intervals: Iterable[Interval0]) -> list[Interval0]:
    """Sorted by contig name then start, overlapping or touching intervals joined (names dropped)."""
    out: list[Interval0] = []
    for iv in sorted(intervals, key=lambda x: (x.chrom, x.start, x.end)):
        if out and out[-1].chrom == iv.chrom and iv.start <= out[-1].end:
            out[-1] = Interval0(iv.chrom, out[-1].start, max(out[-1].end, iv.end))
        else:
            out.append(Interval0(iv.chrom, iv.start, iv.end))
    return out


@dataclass(frozen=True)
class Regions:
    """Merged 0-based half-open intervals per contig, with an overlap test for records."""

    intervals: tuple[Interval0, ...]

    @classmethod
    def parse(cls, regions: Sequence[str] | str | None = None, bed: str | None = None) -> Regions | None:
        """From ``--regions`` strings (each may hold several, comma-separated) and/or a BED file; None if neither."""
        if isinstance(regions, str):
            regions = [regions]
        texts = [t for r in regions or () for t in r.split(",") if t.strip()]
        if not texts and bed is None:
            return None
        intervals = [parse_region(t) for t in texts] + (read_bed(bed) if bed is not None else [])
        if not intervals:
            raise OptionError(f"-R {bed}: the BED file holds no interval")
        return cls(tuple(merge_intervals(intervals)))

    def by_contig(self) -> dict[str, list[Interval0]]:
        out: dict[str, list[Interval0]] = {}
        for iv in self.intervals:
            out.setdefault(iv.chrom, []).append(iv)
        return out

    def overlaps(self, chrom: str, start0: int, end0: int) -> bool:
        """Whether [start0, end0) (0-based half-open) overlaps a region."""
        ivs = self._index().get(chrom)
        if not ivs:
            return False
        starts, ends = ivs
        k = bisect.bisect_right(starts, start0) - 1  # the last region starting at or before start0
        if k >= 0 and ends[k] > start0:
            return True
        return k + 1 < len(starts) and starts[k + 1] < end0

    def _index(self) -> dict[str, tuple[list[int], list[int]]]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {c: ([iv.start for iv in ivs], [iv.end for iv in ivs]) for c, ivs in self.by_contig().items()}
            object.__setattr__(self, "_idx", idx)  # a cache on a frozen value
        return idx

    def describe(self) -> str:
        shown = ",".join(_label(iv) for iv in self.intervals[:3])
        more = f" and {len(self.intervals) - 3} more" if len(self.intervals) > 3 else ""
        return shown + more


def _label(iv: Interval0) -> str:
    if iv.end < CONTIG_END:
        return iv.label()
    return iv.chrom if iv.start == 0 else f"{iv.chrom}:{iv.start + 1}-"
