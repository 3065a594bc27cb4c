"""The planner: Variant -> SitePlan. Where each site's windows lie and what must run; no model here.

Per site (``pos0`` = VCF POS - 1) the reference window is [pos0 - W//2, pos0 - W//2 + W):
the variant's first base sits at index ``centre`` = W//2. Each ALT gets an alternate
window: the reference with REF replaced by ALT, aligned on the left anchor (index
``centre``), cut or filled from the reference to W bases.

Flags: REF_MISMATCH, CONTIG_MISSING, and SYMBOLIC / TOO_LONG ALTs are not scored;
EDGE_PADDED (window padded with N past a contig end) and N_IN_WINDOW (>= 0.5% N,
the paper's drop rule) are scored but flagged.

A plan names its windows by keys (``window_key``: contig and start; ``mask_key``: the
same plus the masked length), so several sites can share one window, and carries
the input index of its variant (``key``), a stable order for sharding and merging.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from caduceus_cli.errors import ReferenceError_
from caduceus_cli.io.variant import Variant, allele_class

log = logging.getLogger(__name__)

N_FRACTION_FLAG = 0.005  # the paper's drop rule: windows with >= 0.5% N


class WindowSource(Protocol):
    """What the planner needs of a reference (``io.reference.Reference`` is one)."""

    lengths: dict[str, int]

    def resolve(self, chrom: str) -> str | None: ...
    def window(self, chrom: str, start: int, length: int): ...  # -> object with .seq and .padded
    def describe(self) -> str: ...


@dataclass(frozen=True)
class WindowLayout:
    """How windows are laid around sites.

    Centred (``core`` None, the paper's protocol): one window per site, the variant at index
    ``window // 2``. Shared (``core`` set): the contig is cut into tiles of ``window`` bp whose
    central ``core`` bp do not overlap (tile k holds 0-based positions [k core, (k + 1) core) in
    its core and starts at k core - (window - core) // 2); a site is scored in the tile whose core
    holds its first base, so every site keeps at least (window - core) // 2 bp of context each side.
    """

    window: int
    n_fraction_flag: float = N_FRACTION_FLAG
    strict: bool = False  # REF mismatch / missing contig: raise instead of flagging
    core: int | None = None

    @property
    def centre(self) -> int:
        return self.window // 2

    def place(self, pos0: int) -> tuple[int, int]:
        """(window start, index of ``pos0`` in the window), both 0-based."""
        if self.core is None:
            return pos0 - self.centre, self.centre
        start = (pos0 // self.core) * self.core - (self.window - self.core) // 2
        return start, pos0 - start


@dataclass(frozen=True)
class SitePlan:
    """A site's windows and the forwards it needs. ``alt_seqs`` maps an ALT's index to its window."""

    variant: Variant
    flags: tuple[str, ...] = ()
    chrom: str | None = None  # the reference's name of the contig
    start: int = 0  # 0-based start of the reference window
    centre: int = 0  # index of the variant's first base in the window
    ref_seq: str = ""
    alt_seqs: Mapping[int, str] = field(default_factory=dict)
    masked: bool = False  # an SNV/MNV ALT: the REF positions get a masked forward

    @property
    def key(self) -> int:
        """The variant's input index: plans sort and shard by it."""
        return self.variant.index

    @property
    def n_alts(self) -> int:
        return self.variant.n_alts

    @property
    def scorable(self) -> bool:
        return bool(self.alt_seqs)

    @property
    def window_key(self) -> tuple[str | None, int]:
        return (self.chrom, self.start)

    @property
    def feature_key(self) -> tuple[str | None, int, int]:
        """The reference window and the position pooled around it."""
        return (self.chrom, self.start, self.centre)

    @property
    def mask_key(self) -> tuple[str | None, int, int, int]:
        """The reference window and the masked span (its start in the window and length)."""
        return (self.chrom, self.start, self.centre, len(self.variant.ref))


class SitePlanner:
    """Plans sites against a reference; warns once per contig the reference lacks."""

    _SPARE = 1024  # shared tiles are fetched this much longer, for the deletions of their sites

    def __init__(self, reference: WindowSource, layout: WindowLayout) -> None:
        self.ref = reference
        self.layout = layout
        self._warned: set[str] = set()
        self._tile: tuple[tuple, object] | None = None  # the last shared tile fetched

    def _window(self, chrom: str, start: int, length: int):
        if self.layout.core is None:
            return self.ref.window(chrom, start, length)
        want = self.layout.window + self._SPARE
        if length > want:
            return self.ref.window(chrom, start, length)
        if self._tile is None or self._tile[0] != (chrom, start):
            self._tile = ((chrom, start), self.ref.window(chrom, start, want))
        return self._tile[1]

    def plan(self, v: Variant) -> SitePlan:
        if not v.alts:
            return SitePlan(v)
        chrom = self.ref.resolve(v.chrom)
        if chrom is None:
            return SitePlan(v, self._missing_contig(v))
        ref_allele = v.ref.upper()
        W = self.layout.window
        start, c = self.layout.place(v.pos0)
        if len(ref_allele) > W - c:
            return SitePlan(v, ("TOO_LONG",))
        kinds = [allele_class(ref_allele, a) for a in v.alts]
        longest_del = max([len(ref_allele) - len(a) for a, k in zip(v.alts, kinds, strict=True) if k == "indel"] + [0])
        win = self._window(chrom, start, W + longest_del)
        if win.seq[c : c + len(ref_allele)] != ref_allele:
            if self.layout.strict:
                raise ReferenceError_(
                    f"{v.label()}: REF {v.ref} does not match the reference "
                    f"({win.seq[c : c + len(ref_allele)] or 'past the contig end'}) in {self.ref.describe()}; "
                    "is it the right genome build?"
                )
            return SitePlan(v, ("REF_MISMATCH",))
        flags = []
        ref_seq = win.seq[:W]
        if win.padded and (start < 0 or start + W > self.ref.lengths[chrom]):
            flags.append("EDGE_PADDED")
        if ref_seq.count("N") >= self.layout.n_fraction_flag * W:
            flags.append("N_IN_WINDOW")
        alt_seqs: dict[int, str] = {}
        masked = False
        for i, (alt, kind) in enumerate(zip(v.alts, kinds, strict=True)):
            if kind == "symbolic":
                flags.append("SYMBOLIC")
            elif len(alt) > W - c:
                flags.append("TOO_LONG")
            else:
                alt_seqs[i] = (win.seq[:c] + alt.upper() + win.seq[c + len(ref_allele) :])[:W]
                masked = masked or kind in ("snv", "mnv")
        return SitePlan(v, tuple(dict.fromkeys(flags)), chrom, start, c, ref_seq, alt_seqs, masked)

    def _missing_contig(self, v: Variant) -> tuple[str, ...]:
        if self.layout.strict:
            raise ReferenceError_(
                f"{v.label()}: contig {v.chrom} is not in the reference {self.ref.describe()} "
                "(use --rename-chrs FILE, or drop --strict to pass such records through flagged)"
            )
        if v.chrom not in self._warned:
            self._warned.add(v.chrom)
            log.warning(
                "contig %s is not in %s: its records pass through flagged CONTIG_MISSING", v.chrom, self.ref.describe()
            )
        return ("CONTIG_MISSING",)
