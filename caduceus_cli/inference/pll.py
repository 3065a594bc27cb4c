"""CAD_LLR of an indel: a pseudo-log-likelihood (PLL) difference around the left-aligned change.

A masked model gives no likelihood for a length change at one position, but it gives each base's
probability given the rest of the sequence. For an indel placed by the planner (left-aligned, the
alleles trimmed to one anchor base; ``planner.AllelePlan``), the span of a window is its changed
bases (the allele after the anchor) plus ``flank`` bases each side, 0-based half-open::

    ref window: [centre + a - flank, centre + len(REF) + flank)
    alt window: [centre + a - flank, centre + len(ALT) + flank)      a = 1 with an anchor base, else 0

Outside these spans the two windows hold the same bases (up to the far end, filled or cut to W
bases), so the spans are where they differ and the bases next to the change. ``PLL(window) = sum over the span of log P(true base)``, each base's
probability over A/C/G/T from a forward in which it is masked, averaged over both strands like the
SNV score (``WindowEngine.masked_logprobs_at``); ``CAD_LLR = PLL(alt) - PLL(ref)``.

Masking (``masking``): 'position' masks one base per forward, the PLL of Salazar et al.
(2020): each base is predicted from everything else, the inserted bases and the new junction
included; it costs one forward per span base, ``(2 flank + deleted) + (2 flank + inserted)`` per
indel (13 for a 1-bp indel at flank 3), shared between ALTs and sites with the same window and
position. 'span' (the default) masks the whole span in one forward per window (2 per indel), so no span base
sees the change. A check on 100 real chr22 indels against 100 simulated ones of the same kind and
length within 3 kb (shipped model, 128 bp windows; real indels sit in repeats, where a model that
knows DNA finds them likelier) separated real from simulated insertions with AUROC 0.61 ('span',
flank 3) against 0.76 / 0.75 / 0.75 ('position', flank 1 / 3 / 5); deletions 0.51 against 0.53 /
0.55 / 0.54. The flank is 3: the check is flat in it, and 3 bp each side keep in the sum the bases
next to the junction and a short repeat unit on either side of it, at 13 forwards for a 1-bp indel
(flank 1: 5; 5: 21).

Like any likelihood of sequences of different lengths the score carries the length change: the
longer allele's sum has more terms, each a log-probability below 0, so deletions lean positive and
insertions negative (on 100 real chr22 indels: deletions +3.7, insertions -2.7 on average); compare
indels of the same kind and length. A span base that is not A/C/G/T
(N, or N padding past a contig end) leaves the ALT unscored (None).

Shared tiles (``IndelPll.plan_tiles``, 'span' masking): the indels of a tile share masked forwards: their
reference spans are masked in the tile's reference passes (with its SNVs, ``passes.pack``) and alternate
passes apply several indels to one window with their alternate spans masked, each PLL read at its own span,
so a tile's indels cost a few forwards in all rather than two each. The other masked spans of a forward are
context the single-indel PLL does not have: a 7-bp masked block next to a span moved the PLL of 34 real chr22
indels (shipped model, 512 bp windows) by 1.57 on average (max 3.98), 0.35 at 8 bp from the span, 0.27 at
16, 0.08 at 32, 0.04 at 64 (max 0.19) and 0.02 at 128; so an indel's span is ``INDEL_SPACING`` (64) bp at
least from any other span of its forward. A tile's second and later passes run in cluster windows
(``passes``).
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass, field

import numpy as np

from caduceus_cli.errors import OptionError
from caduceus_cli.inference.engine import WindowEngine
from caduceus_cli.inference.passes import Pass, pass_order, run_passes
from caduceus_cli.inference.planner import AllelePlan

PLL_FLANK = 3  # bp each side of an indel's changed bases
INDEL_SPACING = 64  # bp at least between the masked spans of indels that share a forward (module docstring)
MASKINGS = ("position", "span")
_BASE_INDEX = {"A": 0, "C": 1, "G": 2, "T": 3}


def pll_spans(a: AllelePlan, flank: int = PLL_FLANK) -> tuple[tuple[int, int], tuple[int, int]]:
    """The 0-based [lo, hi) spans of an indel's reference and alternate windows summed by its PLL (clipped to W)."""
    W = len(a.ref_seq)
    lo = max(0, a.centre + (a.ref[0] == a.alt[0]) - flank)
    return (lo, min(W, a.centre + len(a.ref) + flank)), (lo, min(W, a.centre + len(a.alt) + flank))


def apply_edits(ref_seq: str, tail: str, edits: list[tuple[int, str, str]]) -> str:
    """The window ``ref_seq`` (W bases) with each (centre, REF, ALT) edit applied: REF at 0-based ``centre``
    of ``ref_seq`` replaced by ALT, edits sorted and not overlapping; cut to W bases, or filled from ``tail``
    (the reference after the window), as the planner makes one indel's alternate window. An edit after
    another starts ``sum(len(ALT) - len(REF))`` of the edits before it away from its ``centre``."""
    W = len(ref_seq)
    full = ref_seq + tail
    parts: list[str] = []
    end = 0  # 0-based position in ``full`` up to which it is copied
    for centre, ref, alt in edits:
        if centre < end or full[centre : centre + len(ref)] != ref:
            raise ValueError(f"edit {ref}>{alt} at {centre}: overlaps the edit before it or REF does not match")
        parts += [full[end:centre], alt]
        end = centre + len(ref)
    window = ("".join(parts) + full[end:])[:W]
    if len(window) != W:
        raise ValueError(f"edits delete {W - len(window)} bases more than the tail holds")
    return window


@dataclass
class TileIndels:
    """The shared-tile passes of a chunk's indels (``IndelPll.plan_tiles``)."""

    # window key -> (its W bases, the reference spans to mask there)
    ref_spans: dict[tuple, tuple[str, set[tuple[int, int]]]] = field(default_factory=dict)
    alt_passes: list[Pass] = field(default_factory=list)
    # per distinct ALT: (its allele indices, reference span, alternate pass, offset and length of its span there)
    scored: dict[tuple, tuple[list[int], tuple[int, int], int, int, int]] = field(default_factory=dict)
    alone: list[int] = field(default_factory=list)  # allele indices scored by ``IndelPll.score``


def _true(logp: np.ndarray, bases: str) -> float:
    """Sum of log P (rows of ``logp``, (k, 4) over ACGT) of the true ``bases``."""
    idx = np.fromiter((_BASE_INDEX[b] for b in bases), np.int64, len(bases))  # (k,)
    return float(sum(float(v) for v in logp[np.arange(len(bases)), idx]))


@dataclass
class _AltPass:
    """An alternate pass being filled (``IndelPll._alt_passes``)."""

    sites: set[int] = field(default_factory=set)
    edits: list[tuple[AllelePlan, int]] = field(default_factory=list)  # (ALT, its coordinate shift)
    shift: int = 0  # sum of len(ALT) - len(REF) of the edits so far
    ref_end: int = 0  # 0-based end of the last edit's REF in the reference window
    span_end: int | None = None  # 0-based end of the last alternate span in the pass's window
    first: bool = False  # the tile's first alternate pass (runs on the whole window)


class IndelPll:
    """Scores indel ALTs with a ``WindowEngine``: CAD_LLR = PLL(alt span) - PLL(ref span) (module docstring)."""

    def __init__(self, engine: WindowEngine, flank: int = PLL_FLANK, masking: str = "span") -> None:
        if masking not in MASKINGS:
            raise OptionError(f"indel masking {masking!r}: expected one of {', '.join(MASKINGS)}")
        if flank < 0:
            raise OptionError(f"indel flank {flank}: must be 0 or more")
        self.engine = engine
        self.flank = flank
        self.masking = masking

    def forwards(self, a: AllelePlan) -> int:
        """Masked forwards one indel needs on its own (shared windows and positions run once)."""
        (r0, r1), (a0, a1) = pll_spans(a, self.flank)
        return 2 if self.masking == "span" else (r1 - r0) + (a1 - a0)

    def score(self, alleles: list[AllelePlan], encode: Callable[[str], np.ndarray]) -> list[float | None]:
        """CAD_LLR of each indel ``AllelePlan`` (None where a span base is not A/C/G/T); ``encode``: window -> ids."""
        jobs: dict[tuple, tuple[str, tuple[int, int]]] = {}  # key -> (window, masked span)
        terms: list[tuple[list[tuple], list[tuple]] | None] = []  # per allele: (ref job keys, alt job keys)
        for a in alleles:
            (r0, r1), (a0, a1) = pll_spans(a, self.flank)
            if not set(a.ref_seq[r0:r1] + a.seq[a0:a1]) <= _BASE_INDEX.keys():
                terms.append(None)
                continue
            keys: tuple[list[tuple], list[tuple]] = ([], [])
            for side, (seq, wkey, lo, hi) in enumerate(((a.ref_seq, a.window_key, r0, r1), (a.seq, a.seq, a0, a1))):
                spans = [(lo, hi)] if self.masking == "span" else [(j, j + 1) for j in range(lo, hi)]
                for s in spans:
                    key = (side, wkey, *s)
                    jobs.setdefault(key, (seq, s))
                    keys[side].append(key)
            terms.append(keys)
        values = self._run(list(jobs.values()), encode)
        pll = dict(zip(jobs, values, strict=True))
        return [None if t is None else sum(pll[k] for k in t[1]) - sum(pll[k] for k in t[0]) for t in terms]

    def plan_tiles(
        self,
        alleles: list[AllelePlan],
        sites: list[int],
        min_spacing: int = 0,
        kept_out: Set[tuple] = frozenset(),
        alone: Set[tuple] = frozenset(),
    ) -> TileIndels:
        """Shared-tile passes of indels with 'span' masking, several indels of a tile per masked forward.

        ``sites``: the site of each allele (ALTs of one site never share an alternate pass). Per tile (the
        reference window, ``window_key``) the reference spans are returned for the tile's reference passes
        (``TileIndels.ref_spans``). The distinct ALTs (window, centre, REF, ALT) go into alternate passes, taken
        in order of position: each pass is the tile's reference window with its indels applied left to right
        (0-based reference coordinates, no two edits overlapping), cut or filled from the reference (``tail``)
        to W bases like a single indel's alternate window, with every applied indel's alternate span masked at
        its position shifted by the length changes of the edits before it; an ALT joins the first pass where
        its shifted span starts ``min_spacing`` bp after the pass's last span, ends inside the window, and the
        pass's net deletion stays within the known tail. A pass of one indel is that indel's own alternate
        window. ALTs in ``kept_out`` (by key, ``TileIndels.scored``) never join a tile's first pass; those in
        ``alone`` (by key) are scored alone, as are ALTs scored
        away from their VCF position's tile (``away``: their tile's passes would depend on
        how the input is chunked), with a span reaching past a window edge, or without the reference needed to
        fill their window are scored alone (``TileIndels.alone``, by ``score``).
        """
        plan = TileIndels()
        distinct: dict[tuple, list[int]] = {}  # (window key, centre, REF, ALT) -> allele indices
        for i, a in enumerate(alleles):
            (r0, r1), (a0, a1) = pll_spans(a, self.flank)
            if not set(a.ref_seq[r0:r1] + a.seq[a0:a1]) <= _BASE_INDEX.keys():
                continue
            W = len(a.ref_seq)
            inside = a.centre + (a.ref[0] == a.alt[0]) - self.flank >= 0
            inside &= a.centre + max(len(a.ref), len(a.alt)) + self.flank <= W
            if a.away or not inside or (*a.window_key, a.centre, a.ref, a.alt) in alone:
                plan.alone.append(i)
            else:
                distinct.setdefault((*a.window_key, a.centre, a.ref, a.alt), []).append(i)
        tiles: dict[tuple, list[tuple]] = {}  # window key -> its distinct ALTs' keys, in order of position
        for key in sorted(distinct, key=lambda k: (k[:3], len(k[3]), k[3], k[4])):
            tiles.setdefault(key[:2], []).append(key)
        for wkey, keys in tiles.items():
            plans = [alleles[distinct[k][0]] for k in keys]
            ref_seq, tail = plans[0].ref_seq, max((a.tail for a in plans), key=len)
            groups = [{sites[i] for i in distinct[k]} for k in keys]
            out = [k in kept_out for k in keys]
            alt_at = self._alt_passes(ref_seq, tail, plans, groups, out, min_spacing, plan.alt_passes)
            for k, a, at in zip(keys, plans, alt_at, strict=True):
                if at is None:
                    plan.alone += distinct[k]
                    continue
                span = pll_spans(a, self.flank)[0]
                plan.ref_spans.setdefault(wkey, (ref_seq, set()))[1].add(span)
                plan.scored[k] = (distinct[k], span, *at)
        plan.alone.sort()
        return plan

    def finish(
        self,
        plan: TileIndels,
        alleles: list[AllelePlan],
        ref_logp: dict[tuple, np.ndarray],
        alt_logp: list[np.ndarray],
        encode: Callable[[str], np.ndarray],
    ) -> list[float | None]:
        """CAD_LLR of each allele of ``plan_tiles``: ``ref_logp`` (window key, start, end) -> log P over ACGT
        (span length, 4) at each reference span, ``alt_logp``: per alternate pass (k, 4); the ALTs scored
        alone run now."""
        out: list[float | None] = [None] * len(alleles)
        for indices, (lo, hi), job, offset, n in plan.scored.values():
            a = alleles[indices[0]]
            _, (a0, a1) = pll_spans(a, self.flank)
            ref = _true(ref_logp[(*a.window_key, lo, hi)], a.ref_seq[lo:hi])
            alt = _true(alt_logp[job][offset : offset + n], a.seq[a0:a1])
            for i in indices:
                out[i] = alt - ref
        for i, llr in zip(plan.alone, self.score([alleles[i] for i in plan.alone], encode), strict=True):
            out[i] = llr
        return out

    def _alt_passes(
        self,
        ref_seq: str,
        tail: str,
        alleles: list[AllelePlan],
        groups: list[set[int]],
        kept_out: list[bool],
        min_spacing: int,
        jobs: list[Pass],
    ) -> list[tuple[int, int, int] | None]:
        """Alternate passes of one tile's distinct ALTs (in order of position; ``groups``: the sites of each;
        ``kept_out``: whether each may not join the tile's first pass), appended to ``jobs``: per ALT (pass,
        offset, length) of its shifted span, None where no pass takes it. An ALT tries the passes
        ``passes.pass_order`` gives, then opens one."""
        W = len(ref_seq)

        def takes(q: _AltPass, a: AllelePlan, sites: set[int]) -> bool:
            _, (lo, hi) = pll_spans(a, self.flank)
            return (
                not q.sites & sites
                and a.centre >= q.ref_end
                and (q.span_end is None or lo + q.shift - q.span_end >= min_spacing)
                and hi + q.shift <= W
                and q.shift + len(a.alt) - len(a.ref) >= -len(tail)
            )

        passes: list[_AltPass] = []
        chosen: list[_AltPass | None] = []
        for a, sites, out in zip(alleles, groups, kept_out, strict=True):
            order, opens_first = pass_order([q.first for q in passes], out)
            q = next((passes[i] for i in order if takes(passes[i], a, sites)), None)
            if q is None and takes(fresh := _AltPass(first=opens_first), a, sites):
                passes.append(q := fresh)
            chosen.append(q)
            if q is not None:
                q.sites |= sites
                q.edits.append((a, q.shift))
                q.shift += len(a.alt) - len(a.ref)
                q.ref_end = a.centre + len(a.ref)
                q.span_end = pll_spans(a, self.flank)[1][1] + q.edits[-1][1]
        at: dict[int, tuple[int, int, int]] = {}  # id(ALT) -> (pass, offset, length)
        for q in passes:
            spans: list[tuple[int, int]] = []
            offset = 0
            for a, shift in q.edits:
                _, (lo, hi) = pll_spans(a, self.flank)
                at[id(a)] = (len(jobs), offset, hi - lo)
                spans.append((lo + shift, hi + shift))
                offset += hi - lo
            seq = apply_edits(ref_seq, tail, [(a.centre, a.ref, a.alt) for a, _ in q.edits])
            jobs.append(Pass(seq, tuple(spans), first=q.first))
        return [None if q is None else at[id(a)] for a, q in zip(alleles, chosen, strict=True)]

    def _run(self, jobs: list[tuple[str, tuple[int, int]]], encode: Callable[[str], np.ndarray]) -> list[float]:
        """Sum of log P(true base) over the masked span [lo, hi) of each (window, span) job, one forward each."""
        lps = run_passes(self.engine, [Pass(seq, (span,), first=True) for seq, span in jobs], encode, 0)
        return [_true(lp, seq[lo:hi]) for (seq, (lo, hi)), lp in zip(jobs, lps, strict=True)]
