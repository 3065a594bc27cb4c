"""Masked passes of shared tiles: which spans share a forward, and where the extra passes run.

A shared tile (``planner.WindowLayout``) scores its sites in masked forwards of one W-base window
with many spans masked at once: the SNV/MNV positions (CAD_LLR) and the indels' PLL spans
(``pll``), in the reference window and in alternate windows with several indels applied.

Packing (``pack``): spans sorted by start; each joins the tile's first pass if it fits there, else
the first other pass where it fits, else opens a pass. It fits when it starts at least the spacing
after the pass's last span ends: ``min_spacing`` between two SNV/MNV spans, ``max(min_spacing,
indel_spacing)`` when either is an indel's PLL span (a masked block near a PLL span moves the PLL;
see ``pll``). So a tile's SNVs and the reference spans of its indels share the tile's first
reference pass, and the alternate spans of its indels its first alternate pass, where they fit.

Cluster windows: a tile's first passes cover sites spread over its whole core and run on the whole
window. The passes after them exist where spans crowd together (indels at a repeat, overlapping
alleles, an SNV next to an indel): they run in windows of ``cluster`` bp centred on runs of their
spans that fit in ``cluster // 2`` bp, so every span keeps at least ``cluster // 4`` bp of context
on each side (within the tile's window). Such a pass runs whole instead when its cluster windows
would cost as many tokens, or when one of its spans is longer than ``cluster // 2``. An indel's
CAD_LLR is a difference of two PLLs, so both come from windows of one kind (``tileplan``).
Default window (``default_cluster``): 16,384 bp, or W if shorter (then every pass runs whole): at
W = 131,072 a crowded span keeps 4,096 bp of context each side, where the tile guarantees 32,768
(the trade-off against 32,768-bp windows is measured in bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from caduceus_cli.errors import OptionError
from caduceus_cli.inference.engine import WindowEngine
from caduceus_cli.tokenizer import MASK

DEFAULT_CLUSTER = 16_384  # bp: the default cluster window (W if shorter)

Span = tuple[int, int]  # 0-based [start, end) in a window


@dataclass(frozen=True)
class Pass:
    """One masked forward: the W-base window ``seq`` with every span masked (sorted, not overlapping);
    ``first``: a tile's first pass of this window, which always runs on the whole window."""

    seq: str
    spans: tuple[Span, ...]
    first: bool


def default_cluster(window: int, cluster: int | None = None) -> int:
    """The cluster window in bp: ``cluster`` if given (checked), else ``DEFAULT_CLUSTER`` or W if shorter
    (W: every pass runs on the whole window)."""
    if cluster is None:
        return min(window, DEFAULT_CLUSTER)
    if not 4 <= cluster <= window:
        raise OptionError(f"--cluster-window {cluster}: must be between 4 and the window ({window})")
    return cluster


def pack(
    spans: Iterable[tuple[int, int, bool, bool]], min_spacing: int, indel_spacing: int
) -> list[tuple[list[Span], bool]]:
    """Spans (start, end, is an indel's, kept out of the first pass) -> passes (sorted spans, is the first).
    A span tries the passes ``pass_order`` gives, then opens one; see the module docstring for the spacing."""
    passes: list[tuple[list[tuple[int, int, bool]], bool]] = []  # (spans, is the first)
    for start, end, indel, out in sorted(set(spans)):
        order, opens_first = pass_order([first for _, first in passes], out)
        fits = (passes[i] for i in order if _fits(passes[i][0][-1], start, indel, min_spacing, indel_spacing))
        target = next(fits, None)
        if target is None:
            passes.append(target := ([], opens_first))
        target[0].append((start, end, indel))
    return [([(s, e) for s, e, _ in q], first) for q, first in passes]


def pass_order(firsts: list[bool], kept_out: bool) -> tuple[list[int], bool]:
    """The rule both pass packers follow (this module's ``pack``, ``pll``'s alternate passes): the
    passes a span tries, as indices in order, and whether a pass it opens is the first. Kept out of
    the first pass: the other passes in order; else the first pass, then the others, and none
    before the first pass exists (the span opens it)."""
    has_first = any(firsts)
    if kept_out:
        return [i for i, first in enumerate(firsts) if not first], False
    if not has_first:
        return [], True
    return sorted(range(len(firsts)), key=lambda i: not firsts[i]), False


def _fits(last: tuple[int, int, bool], start: int, indel: bool, min_spacing: int, indel_spacing: int) -> bool:
    """Whether a span starting at ``start`` may follow the span ``last`` (start, end, an indel's) in a pass."""
    gap = max(min_spacing, indel_spacing) if indel or last[2] else min_spacing
    return start - last[1] >= gap


def crops(p: Pass, cluster: int) -> list[tuple[int, int, tuple[Span, ...]]]:
    """Where pass ``p`` runs: (0-based start, length, spans) per forward: cluster windows, or the whole
    window in one forward when ``p`` is the first, when its cluster windows would cost as many tokens, or
    when one of its spans is longer than half a cluster window.
    Spans are taken in order into runs that fit half a cluster window; each run gets the cluster window
    centred on it (moved inside the pass's window at its ends, where two runs may share one)."""
    W = len(p.seq)
    whole = [(0, W, p.spans)]
    if p.first or cluster >= W or not p.spans:
        return whole
    groups: list[list[Span]] = []  # runs of spans that fit half a cluster window
    for s, e in p.spans:
        if groups and e - groups[-1][0][0] <= cluster // 2:
            groups[-1].append((s, e))
        else:
            groups.append([(s, e)])
    if len(groups) * cluster >= W or any(g[-1][1] - g[0][0] > cluster // 2 for g in groups):
        return whole  # (or a span longer than half a cluster window)
    out: list[tuple[int, int, tuple[Span, ...]]] = []
    for spans in groups:
        lo, hi = spans[0][0], spans[-1][1]
        start = min(max(0, (lo + hi) // 2 - cluster // 2), W - cluster)
        if out and out[-1][0] == start:  # two runs moved to the same window at an end: one forward
            out[-1] = (start, cluster, out[-1][2] + tuple(spans))
        else:
            out.append((start, cluster, tuple(spans)))
    return out


def run_passes(
    engine: WindowEngine, passes: list[Pass], encode: Callable[[str], np.ndarray], cluster: int
) -> list[np.ndarray]:
    """log P over ACGT at each pass's masked positions, (k, 4) per pass in span order. Forwards of one length
    run together, ``engine.batch_size`` whole windows at a time, or as many cluster windows as hold as many
    tokens (memory: one batch)."""
    rows: dict[int, list[tuple[int, int, np.ndarray]]] = {}  # length -> (pass, window start, masked positions)
    for i, p in enumerate(passes):
        for start, length, spans in crops(p, cluster):
            if not spans:
                raise ValueError("a masked pass needs at least one span")
            positions = np.concatenate([np.arange(s, e) for s, e in spans])  # (k,) in the pass's window
            rows.setdefault(length, []).append((i, start, positions - start))  # (k,) in the forward's window
    parts: list[list[tuple[int, np.ndarray]]] = [[] for _ in passes]  # per pass: (window start, (k, 4))
    cache: dict[int, np.ndarray] = {}  # pass -> its tokens (W,), while its rows are built
    longest = max((len(p.seq) for p in passes), default=1)
    for length, group in rows.items():
        step = engine.batch_size * max(1, longest // length)
        for b in range(0, len(group), step):
            part = group[b : b + step]
            ids = np.empty((len(part), length), np.uint8)  # (n, length)
            for r, (i, start, local) in enumerate(part):
                full = cache.get(i)
                if full is None:
                    full = cache[i] = encode(passes[i].seq)  # (W,)
                ids[r] = full[start : start + length]
                ids[r, local] = MASK
            lps = engine.masked_logprobs_at(ids, [local for _, _, local in part], step)  # (k, 4)s
            for (i, start, _), lp in zip(part, lps, strict=True):
                parts[i].append((start, lp))
            cache.clear()
    return [np.concatenate([lp for _, lp in sorted(q, key=lambda x: x[0])]) for q in parts]
