"""Left-alignment of indels against the reference, as ``bcftools norm -f`` / ``vt normalize`` do it.

An indel can be written at several positions when it lies in a repeat: deleting one A of AAAA
is ``CA>C`` at the C or ``AA>A`` at any A of the run. ``normalise`` gives the one representation
every caller agrees on (Tan et al. 2015): the common trailing bases trimmed, the variant shifted
left while its alleles end in the same base, the common leading bases trimmed, keeping at least one
base in each allele (the anchor). Scoring places indels by this form, so every way of writing the
same change gets the same windows and the same scores; the VCF record is written back as given.

Coordinates are 0-based (``pos0``: the first base of REF). The reference is read through
``fetch(start0, end0)``, the upper-case bases of [start0, end0) with ``0 <= start0 <= end0``,
a block at a time to the left of the variant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Fetch = Callable[[int, int], str]


@dataclass(frozen=True)
class Normalised:
    """A REF/ALT pair in normal form; ``pos0`` is the 0-based position of REF's first base."""

    pos0: int
    ref: str
    alt: str


class _LeftContext:
    """Reference bases to the left of a 0-based position, fetched in growing blocks."""

    def __init__(self, end0: int, fetch: Fetch, block: int) -> None:
        self.start0 = self.end0 = end0
        self.seq = ""
        self.fetch = fetch
        self.block = block

    def base(self, pos0: int) -> str:
        """The reference base at 0-based ``pos0`` (0 <= pos0 < end0)."""
        if pos0 < self.start0:
            lo = max(0, min(pos0, self.start0 - self.block))
            self.seq = self.fetch(lo, self.start0).upper() + self.seq
            self.start0 = lo
            self.block *= 2
        return self.seq[pos0 - self.start0]


def normalise(pos0: int, ref: str, alt: str, fetch: Fetch, block: int = 64) -> Normalised:
    """The normal form of the REF/ALT pair at 0-based ``pos0`` (see the module docstring); alleles upper-cased.

    Pairs of equal length (SNVs, MNVs) come back as given (upper-cased). REF must match the
    reference at ``pos0`` (the planner checks it first); shifting stops at the contig start.
    """
    ref, alt = ref.upper(), alt.upper()
    if len(ref) == len(alt):
        return Normalised(pos0, ref, alt)
    left = _LeftContext(pos0, fetch, block)
    while True:
        if ref and alt and ref[-1] == alt[-1] and (pos0 > 0 or min(len(ref), len(alt)) > 1):
            ref, alt = ref[:-1], alt[:-1]  # trim the common last base
        elif not ref or not alt:
            pos0 -= 1  # an allele ran empty: take in the base on the left
            b = left.base(pos0)
            ref, alt = b + ref, b + alt
        else:
            break
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt = ref[1:], alt[1:]
        pos0 += 1
    return Normalised(pos0, ref, alt)


def string_fetch(seq: str, offset0: int = 0) -> Fetch:
    """A ``fetch`` over an in-memory sequence whose first base is at 0-based ``offset0``."""

    def fetch(start0: int, end0: int) -> str:
        return seq[start0 - offset0 : end0 - offset0].upper()

    return fetch
