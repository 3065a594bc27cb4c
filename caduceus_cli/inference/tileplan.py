"""A chunk's shared-tile masked passes, planned ahead of the model, and the scores read from them.

``plan_passes`` is pure planning (no model): it runs on the prefetch worker thread with the rest of a
chunk's planning (``featurise.scored_chunks``), so the GPU does not wait for it. Per tile (a shared
window, ``planner.WindowLayout``) the SNV/MNV spans and the reference spans of the tile's indels are
packed into reference passes (``passes.pack``) and the indels into alternate passes
(``pll.IndelPll.plan_tiles``). A tile's first reference and first alternate pass run on the whole
window, its other passes in cluster windows where that is cheaper (``passes.crops``). An indel's
CAD_LLR is a difference of two PLLs, so both must come from windows of one kind: an indel with one
span in a whole window and the other in a cluster window is kept out of both first passes, and if
that leaves it split (a later pass can run whole: its cluster windows would cost more, or a long
span), it is scored on its own, two whole windows; the packing is redone until no indel is split.
``read_passes`` turns the passes' log-probabilities into SNV/MNV log-probs and indel CAD_LLR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from caduceus_cli.inference.passes import Pass, crops, pack
from caduceus_cli.inference.planner import AllelePlan, SitePlan
from caduceus_cli.inference.pll import IndelPll, TileIndels


@dataclass
class PassPlan:
    """The masked passes of a chunk's shared tiles: reference passes (``owners``: the window key of each) then
    the indels' alternate passes (``tiles.alt_passes``). ``indels``: the indel ALTs the passes score; empty
    when indels are scored on their own (``batched`` off)."""

    snvs: list[AllelePlan]
    indels: list[AllelePlan]
    batched: bool
    tiles: TileIndels
    ref_passes: list[Pass]
    owners: list[tuple]

    @property
    def passes(self) -> list[Pass]:
        return self.ref_passes + self.tiles.alt_passes


def plan_passes(
    plans: list[SitePlan],
    indels: IndelPll,
    batched: bool,
    min_spacing: int,
    indel_spacing: int,
    cluster: int,
    window: int,
) -> PassPlan:
    """The passes of the SNV/MNV ALTs of ``plans`` and, when ``batched``, of their indel ALTs (module
    docstring); ``cluster`` >= ``window``: every pass runs whole and none is kept out."""
    alleles = [(k, a) for k, p in enumerate(plans) for a in p.alleles.values()]
    snvs = [a for _, a in alleles if a.masked]
    pairs = [(k, a) for k, a in alleles if not a.masked] if batched else []
    ins, sites = [a for _, a in pairs], [k for k, _ in pairs]
    spacing = max(min_spacing, indel_spacing)
    kept_out: set[tuple] = set()  # indel ALTs kept out of their tile's first passes (both sides)
    alone: set[tuple] = set()  # indel ALTs scored on their own (whole windows both sides)
    while True:
        tiles = indels.plan_tiles(ins, sites, spacing, kept_out, alone)
        ref_passes, owners = _ref_passes(snvs, tiles, kept_out, min_spacing, spacing)
        if cluster >= window:
            break
        ref_whole: dict[tuple, bool] = {}  # (window key, start, end) -> its pass runs whole; crops once per pass
        for key, p in zip(owners, ref_passes, strict=True):
            whole = _whole(p, cluster)
            ref_whole.update({(*key, s, e): whole for s, e in p.spans})
        alt_whole = [_whole(p, cluster) for p in tiles.alt_passes]
        lopsided = {
            k for k, (_, (lo, hi), job, _, _) in tiles.scored.items() if ref_whole[(*k[:2], lo, hi)] != alt_whole[job]
        }
        if not lopsided:
            break
        if lopsided - kept_out:  # first try both sides in later passes
            kept_out |= lopsided
        else:  # both in later passes, one still whole (its pass's cluster windows would cost more, or a long span)
            alone |= lopsided
    return PassPlan(snvs, ins, batched, tiles, ref_passes, owners)


def _whole(p: Pass, cluster: int) -> bool:
    """Whether pass ``p`` runs on its whole window (``passes.crops``)."""
    return crops(p, cluster)[0][1] == len(p.seq)


def read_passes(
    pp: PassPlan, lps: list[np.ndarray], indels: IndelPll, encode: Callable[[str], np.ndarray]
) -> tuple[dict, list[float | None] | None]:
    """(SNV/MNV log-probs by mask key, CAD_LLR of ``pp.indels`` or None when not ``batched``) from ``lps``, the
    log-probs over ACGT at the masked positions of each of ``pp.passes`` ((k, 4) each, in span order)."""
    n = len(pp.ref_passes)
    span_lp: dict[tuple, np.ndarray] = {}  # (window key, start, end) -> (end - start, 4)
    for key, p, lp in zip(pp.owners, pp.ref_passes, lps[:n], strict=True):
        offset = 0
        for s, e in p.spans:
            span_lp[(*key, s, e)] = lp[offset : offset + e - s]
            offset += e - s
    mask_lp = {a.mask_key: span_lp[(*a.window_key, a.centre, a.centre + len(a.ref))] for a in pp.snvs}
    if not pp.batched:
        return mask_lp, None
    return mask_lp, indels.finish(pp.tiles, pp.indels, span_lp, lps[n:], encode)


def _ref_passes(
    snvs: list[AllelePlan], tiles: TileIndels, kept_out: set[tuple], min_spacing: int, spacing: int
) -> tuple[list[Pass], list[tuple]]:
    """The masked passes of each tile's reference window and the window key of each: its SNV/MNV spans and
    the reference spans of ``tiles``' indels (those of ``kept_out`` ALTs out of the first pass)."""
    marks: dict[tuple, tuple[str, dict[tuple[int, int], tuple[bool, bool]]]] = {}  # key -> (W bases, marks)
    for a in snvs:  # span -> (an indel's, kept out of the first pass)
        marks.setdefault(a.window_key, (a.ref_seq, {}))[1].setdefault((a.centre, a.centre + len(a.ref)), (False, False))
    out = {(*k[:2], *span) for k, (_, span, *_) in tiles.scored.items() if k in kept_out}
    for key, (seq, spans) in tiles.ref_spans.items():
        tile = marks.setdefault(key, (seq, {}))[1]
        tile.update({span: (True, (*key, *span) in out) for span in spans})
    passes: list[Pass] = []
    owners: list[tuple] = []
    for key, (seq, tile) in marks.items():
        for q, first in pack(((s, e, i, o) for (s, e), (i, o) in tile.items()), min_spacing, spacing):
            passes.append(Pass(seq, tuple(q), first))
            owners.append(key)
    return passes, owners
