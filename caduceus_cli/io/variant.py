"""The variant value type: what every reader builds and every later layer reads.

Coordinates: ``pos1`` is the VCF's 1-based POS, as read; ``pos0`` is the same base
0-based (``pos1 - 1``). The conversion happens here, once; nothing past the IO
layer sees a 1-based position except to write it back out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One input record: a VCF/BCF record or a table row.

    ``ref`` and ``alts`` are as written in the input (case kept, so outputs echo
    them byte for byte); ``id`` is None for a missing ID ('.'); ``index`` is the
    record's 0-based position in its input, the stable key that orders outputs.
    """

    chrom: str
    pos1: int
    ref: str
    alts: tuple[str, ...]
    id: str | None = None
    index: int = 0

    @property
    def pos0(self) -> int:
        """0-based position of the first REF base."""
        return self.pos1 - 1

    @property
    def n_alts(self) -> int:
        return len(self.alts)

    def label(self) -> str:
        """``chrom:pos1`` as a user sees it in the input."""
        return f"{self.chrom}:{self.pos1}"


def allele_class(ref: str, alt: str) -> str:
    """'snv', 'mnv', 'indel' or 'symbolic' ('<DEL>', '*', breakends, missing, non-ACGTN)."""
    if not alt or alt in (".", "*") or alt.startswith("<") or "[" in alt or "]" in alt:
        return "symbolic"
    if not set(alt.upper()) <= set("ACGTN") or not set(ref.upper()) <= set("ACGTN"):
        return "symbolic"
    if len(ref) == len(alt):
        return "snv" if len(ref) == 1 else "mnv"
    return "indel"
