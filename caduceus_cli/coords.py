"""Coordinate types. VCF positions are 1-based (``pos1``); everything else is 0-based half-open."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interval0:
    """A half-open interval [start, end) in 0-based reference coordinates."""

    chrom: str
    start: int
    end: int
