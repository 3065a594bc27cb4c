"""The planner: Variant -> SitePlan. Where each ALT's windows lie and what must run; no model here.

Each scorable ALT gets an ``AllelePlan``: a reference window, the index ``centre`` of the
variant's first base in it, and an alternate window (the reference with REF replaced by ALT,
aligned on the left anchor at ``centre``, cut or filled from the reference to W bases).
SNV and MNV ALTs sit at the VCF position (``pos0`` = POS - 1, 0-based). Indels are first
left-aligned and trimmed against the reference (``normalise``, as ``bcftools norm -f``) and
placed at their normalised position, so every way of writing the same indel gets the same
windows; each ALT of a multi-allelic site is normalised on its own and may sit elsewhere.
Centred windows (the paper's protocol) start at ``pos0 - W//2``, the variant at W//2; shared
tiles are laid out by ``WindowLayout``.

Flags: REF_MISMATCH, CONTIG_MISSING, and SYMBOLIC / TOO_LONG ALTs are not scored;
EDGE_PADDED (a window padded with N past a contig end) and N_IN_WINDOW (>= 0.5% N, the
paper's drop rule) are scored but flagged, judged on the windows the ALTs are scored in.

Plans name their windows by keys (``window_key``: contig and 0-based start; ``feature_key``:
the same plus the pooled position; ``mask_key``: plus the masked length), so several ALTs and
sites can share one window, and carry the input index of their variant (``key``), a stable
order for sharding and merging.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from caduceus_cli.errors import ReferenceError_
from caduceus_cli.inference.normalise import normalise
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
class AllelePlan:
    """Where one ALT is scored. ``ref``/``alt``: the alleles as scored, upper case (an indel's normalised,
    keeping its anchor base; an SNV's or MNV's as in the VCF), ``ref`` at index ``centre`` of ``ref_seq``
    (the reference window, starting at 0-based ``start``) and ``alt`` at the same index of ``seq`` (the
    alternate window)."""

    chrom: str
    kind: str  # snv | mnv | indel
    start: int
    centre: int
    ref: str
    alt: str
    ref_seq: str
    seq: str
    # the reference after ``ref_seq`` (from 0-based ``start`` + W; an indel's, for shared passes that put several
    # indels in one alternate window), and whether the ALT is scored in another window than its VCF position's
    tail: str = field(default="", repr=False, compare=False)
    away: bool = field(default=False, compare=False)

    @property
    def masked(self) -> bool:
        """An SNV/MNV: its REF positions get a masked forward of the reference window."""
        return self.kind != "indel"

    @property
    def window_key(self) -> tuple[str, int]:
        return (self.chrom, self.start)

    @property
    def feature_key(self) -> tuple[str, int, int]:
        """The reference window and the position pooled around it."""
        return (self.chrom, self.start, self.centre)

    @property
    def mask_key(self) -> tuple[str, int, int, int]:
        """The reference window and the masked span (its start in the window and length)."""
        return (self.chrom, self.start, self.centre, len(self.ref))


ALT_FLAGS = ("SYMBOLIC", "TOO_LONG")  # flags one ALT can have on its own; the others are the site's


@dataclass(frozen=True)
class SitePlan:
    """A site and its scorable ALTs (``alleles``: ALT index -> ``AllelePlan``).

    ``start``, ``centre`` and ``ref_seq`` are the site's window: the one its scorable ALTs share (a lone
    indel's is at its normalised position), else the one at the VCF position.
    """

    variant: Variant
    flags: tuple[str, ...] = ()
    chrom: str | None = None  # the reference's name of the contig
    start: int = 0  # 0-based start of the site's reference window
    centre: int = 0  # index of the site's first base in that window
    ref_seq: str = ""
    alleles: Mapping[int, AllelePlan] = field(default_factory=dict)

    @property
    def key(self) -> int:
        """The variant's input index: plans sort and shard by it."""
        return self.variant.index

    @property
    def n_alts(self) -> int:
        return self.variant.n_alts

    @property
    def scorable(self) -> bool:
        return bool(self.alleles)

    def alt_flags(self, i: int) -> tuple[str, ...]:
        """The flags of ALT ``i`` (one row per ALT in TSV and Parquet): the site's, less the SYMBOLIC /
        TOO_LONG of its other ALTs. A site that failed as a whole (missing contig, REF mismatch or too long)
        gives every ALT its flags."""
        if self.chrom is None:  # the site failed as a whole (contig, REF)
            return self.flags
        if i in self.alleles:
            return tuple(f for f in self.flags if f not in ALT_FLAGS)
        own = "SYMBOLIC" if allele_class(self.variant.ref.upper(), self.variant.alts[i]) == "symbolic" else "TOO_LONG"
        return tuple(f for f in self.flags if f not in ALT_FLAGS or f == own)

    @property
    def alt_seqs(self) -> dict[int, str]:
        """ALT index -> its alternate window."""
        return {i: a.seq for i, a in self.alleles.items()}

    @property
    def masked(self) -> bool:
        return any(a.masked for a in self.alleles.values())

    @property
    def window_key(self) -> tuple[str | None, int]:
        return (self.chrom, self.start)


class SitePlanner:
    """Plans sites against a reference; warns once per contig the reference lacks."""

    _SPARE = 1024  # shared tiles are fetched this much longer, for the deletions of their sites
    _CACHED = 4  # windows kept: a site's, and those of its indels left-aligned elsewhere

    def __init__(self, reference: WindowSource, layout: WindowLayout) -> None:
        self.ref = reference
        self.layout = layout
        self._warned: set[str] = set()
        self._cache: OrderedDict[tuple[str, int], object] = OrderedDict()  # (contig, start) -> window
        self._heads: dict[tuple[str, int], tuple[str, int]] = {}  # (contig, start) -> (its W bases, their N count)

    def _window(self, chrom: str, start: int, length: int):
        """At least ``length`` bases from 0-based ``start`` (N past the contig ends); shared tiles are
        fetched ``_SPARE`` bases long, and recent windows are reused."""
        key = (chrom, start)
        win = self._cache.get(key)
        if win is None or len(win.seq) < length:
            want = length if self.layout.core is None else max(length, self.layout.window + self._SPARE)
            win = self.ref.window(chrom, start, want)
            self._cache[key] = win
        self._cache.move_to_end(key)
        while len(self._cache) > self._CACHED:
            self._heads.pop(self._cache.popitem(last=False)[0], None)
        return win

    def _head(self, chrom: str, start: int) -> str:
        """The first W bases of the cached window at (``chrom``, 0-based ``start``): one string per window, so
        the sites of a shared tile share it (hashed, compared and counted once), with its N count."""
        key = (chrom, start)
        head = self._heads.get(key)
        if head is None:
            seq = self._cache[key].seq[: self.layout.window]
            head = self._heads[key] = (seq, seq.count("N"))
        return head[0]

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
                length = self.ref.lengths[chrom]
                if v.pos0 >= length:
                    found = f"position {v.pos1} is past the end of {chrom} ({length} bp)"
                elif v.pos0 + len(ref_allele) > length:
                    found = f"REF {v.ref} runs past the end of {chrom} ({length} bp)"
                else:
                    found = f"REF {v.ref} does not match the reference ({win.seq[c : c + len(ref_allele)]})"
                raise ReferenceError_(f"{v.label()}: {found} in {self.ref.describe()}; is it the right genome build?")
            return SitePlan(v, ("REF_MISMATCH",))
        alt_flags: list[str] = []
        alleles: dict[int, AllelePlan] = {}
        ref_seq = self._head(chrom, start)
        for i, (alt, kind) in enumerate(zip(v.alts, kinds, strict=True)):
            if kind == "symbolic":
                alt_flags.append("SYMBOLIC")
            elif len(alt) > W - c:
                alt_flags.append("TOO_LONG")
            elif kind != "indel":
                seq = (win.seq[:c] + alt.upper() + win.seq[c + len(ref_allele) :])[:W]
                alleles[i] = AllelePlan(chrom, kind, start, c, ref_allele, alt.upper(), ref_seq, seq)
            elif (a := self._indel(chrom, v.pos0, ref_allele, alt, start, win, ref_seq)) is not None:
                alleles[i] = a
            else:
                alt_flags.append("TOO_LONG")
        if len({(a.start, a.centre) for a in alleles.values()}) == 1:  # one placement: the site's window
            first = next(iter(alleles.values()))
            start, c, ref_seq = first.start, first.centre, first.ref_seq
        windows = {a.start: a.ref_seq for a in alleles.values()} or {start: ref_seq}
        flags = self._window_flags(chrom, windows) + alt_flags
        return SitePlan(v, tuple(dict.fromkeys(flags)), chrom, start, c, ref_seq, alleles)

    def _indel(
        self, chrom: str, pos0: int, ref: str, alt: str, site_start: int, win, site_seq: str
    ) -> AllelePlan | None:
        """An indel ALT left-aligned (``normalise``) and placed at its normalised position; None if it does
        not fit the window. ``win``: the site's window, from 0-based ``site_start``; ``site_seq``: its W bases."""

        def fetch(lo: int, hi: int) -> str:  # 0-based [lo, hi), 0 <= lo
            if site_start <= lo and hi <= site_start + len(win.seq):
                return win.seq[lo - site_start : hi - site_start]
            return self.ref.window(chrom, lo, hi - lo).seq

        n = normalise(pos0, ref, alt, fetch)
        start, c = self.layout.place(n.pos0)
        W = self.layout.window
        if max(len(n.ref), len(n.alt)) > W - c:
            return None
        if start != site_start:
            win = self._window(chrom, start, W + max(0, len(n.ref) - len(n.alt)))
            site_seq = self._head(chrom, start)
        seq = (win.seq[:c] + n.alt + win.seq[c + len(n.ref) :])[:W]
        return AllelePlan(chrom, "indel", start, c, n.ref, n.alt, site_seq, seq, win.seq[W:], start != site_start)

    def _n_count(self, chrom: str, start: int, seq: str) -> int:
        """N bases in ``seq``, the W bases of the window at (``chrom``, ``start``): counted once per window."""
        head = self._heads.get((chrom, start))
        return head[1] if head is not None and head[0] is seq else seq.count("N")

    def _window_flags(self, chrom: str, windows: dict[int, str]) -> list[str]:
        """EDGE_PADDED / N_IN_WINDOW if any window (0-based start -> its W bases) qualifies."""
        W, length = self.layout.window, self.ref.lengths[chrom]
        flags = []
        if any(start < 0 or start + W > length for start in windows):
            flags.append("EDGE_PADDED")
        if any(self._n_count(chrom, s, seq) >= self.layout.n_fraction_flag * W for s, seq in windows.items()):
            flags.append("N_IN_WINDOW")
        return flags

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
