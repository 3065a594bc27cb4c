"""The featuriser: runs the model on planned sites and turns its outputs into per-ALT features and scores.

Per ALT of a planned site:

- CAD_LLR (SNV, MNV): log P(alt) - log P(ref) over A/C/G/T at the REF positions, all
  masked in one forward of the reference window, summed over positions, averaged
  over both strands. Indels get None: a masked model has no likelihood for a length
  change at one position.
- CAD_COS (SNV, MNV, indel): cosine distance of the RC-averaged embeddings of the
  reference and alternate windows, mean-pooled over +/- flank positions around the
  variant.
- The paper's variant feature: [ref pooled, alt pooled] (``SiteScores.variant_features``).

Within a chunk identical windows run once (multi-allelic sites share the reference
and masked windows); reference-window features are also cached across chunks.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from caduceus_cli.inference.engine import WindowEngine
from caduceus_cli.inference.planner import SitePlan, SitePlanner
from caduceus_cli.inference.spec import EmbeddingSpec
from caduceus_cli.io.variant import Variant
from caduceus_cli.tokenizer import MASK, encode

log = logging.getLogger(__name__)

_BASE_INDEX = {"A": 0, "C": 1, "G": 2, "T": 3}
REF_CACHE_WINDOWS = 4096
T = TypeVar("T")


@dataclass
class SiteScores:
    """A plan with what the model made of it: per-ALT scores (None = not scored) and pooled features."""

    plan: SitePlan
    llr: list[float | None]
    cos: list[float | None]
    ref_feat: np.ndarray | None = None  # (F,) pooled features of the reference window
    alt_feats: dict[int, np.ndarray] = field(default_factory=dict)  # ALT index -> (F,) pooled alternate features

    @classmethod
    def empty(cls, plan: SitePlan) -> SiteScores:
        return cls(plan, [None] * plan.n_alts, [None] * plan.n_alts)

    @property
    def flags(self) -> tuple[str, ...]:
        return self.plan.flags

    def variant_features(self, i: int) -> np.ndarray | None:
        """The paper's variant feature of ALT ``i``: [ref pooled, alt pooled], (2F,); None if not scored."""
        if i not in self.alt_feats:
            return None
        return np.concatenate([self.ref_feat, self.alt_feats[i]])


class Featuriser:
    """Runs plans through a ``WindowEngine``: pooled features and CAD_COS (``features``), CAD_LLR (``llr``).

    Centred plans (one window per site) batch windows across the chunk. Shared plans (several sites per
    tile window, see ``planner.WindowLayout``) run one reference forward per tile pooled at each site,
    one alternate forward per ALT, and masked forwards in which every SNV/MNV of the tile is masked at
    once, except that sites closer than ``min_spacing`` bp go to further passes.
    """

    def __init__(
        self, engine: WindowEngine, spec: EmbeddingSpec, llr: bool = True, features: bool = True, min_spacing: int = 0
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.llr = llr
        self.features = features
        self.min_spacing = min_spacing
        self._ref_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def run(self, plans: list[SitePlan], shared: bool = False) -> list[SiteScores]:
        """Score one chunk of plans (in order)."""
        out = [SiteScores.empty(p) for p in plans]
        todo = [s for s in out if s.plan.scorable]
        if not todo:
            return out
        if shared:
            ref_feat, alt_feat = self._shared_features(todo) if self.features else ({}, {})
            mask_lp = self._shared_masked(todo) if self.llr else {}
        else:
            ref_feat, alt_feat, mask_lp = self._centred(todo)
        for s in todo:
            p = s.plan
            ref_allele = p.variant.ref.upper()
            if self.features:
                s.ref_feat = ref_feat[p.feature_key]
            for i, seq in p.alt_seqs.items():
                alt = p.variant.alts[i].upper()
                if self.features:
                    s.alt_feats[i] = alt_feat[(seq, p.centre)]
                    s.cos[i] = cosine_distance(s.ref_feat, s.alt_feats[i])
                if self.llr and len(alt) == len(ref_allele):
                    s.llr[i] = _llr(mask_lp[p.mask_key], ref_allele, alt)
        return out

    # ---- one window per site ----
    def _centred(self, todo: list[SiteScores]) -> tuple[dict, dict, dict]:
        centre = todo[0].plan.centre
        ref_keys: dict[tuple, int] = {}
        alt_keys: dict[str, int] = {}
        mask_keys: dict[tuple, int] = {}
        for s in todo:
            p = s.plan
            if self.features and p.feature_key not in self._ref_cache:
                ref_keys.setdefault(p.feature_key, len(ref_keys))
            if self.features:
                for seq in p.alt_seqs.values():
                    alt_keys.setdefault(seq, len(alt_keys))
            if p.masked and self.llr:
                mask_keys.setdefault(p.mask_key, len(mask_keys))
        by_ref = {s.plan.feature_key: s.plan.ref_seq for s in todo}
        ref_feats = self._pooled([by_ref[k] for k in ref_keys], centre)
        for k, idx in ref_keys.items():
            self._ref_cache[k] = ref_feats[idx]
        ref = {k: self._ref_cache[k] for k in by_ref} if self.features else {}
        while len(self._ref_cache) > REF_CACHE_WINDOWS:  # oldest first, after this chunk's look-ups
            self._ref_cache.popitem(last=False)
        alt_feats = self._pooled(list(alt_keys), centre)
        alt = {(seq, centre): alt_feats[i] for seq, i in alt_keys.items()}
        return ref, alt, self._masked_logprobs(mask_keys, by_ref, centre)

    def _pooled(self, seqs: list[str], centre: int) -> np.ndarray:
        if not seqs:
            return np.zeros((0, 1), np.float32)
        ids = np.stack([encode(s) for s in seqs])  # (N, W)
        return self.engine.pooled_features(ids, centre, self.spec.flank, self.spec.layer, self.spec.rc_mode)

    def _masked_logprobs(self, mask_keys: dict[tuple, int], by_ref: dict[tuple, str], centre: int) -> dict:
        """log P over ACGT at each masked span, (length, 4) per mask key; one batch per masked length."""
        out = {}
        for length in sorted({k[3] for k in mask_keys}):
            keys = [k for k in mask_keys if k[3] == length]
            ids = np.stack([encode(by_ref[k[:3]]) for k in keys])  # (n, W)
            ids[:, centre : centre + length] = MASK
            lp = self.engine.masked_logprobs(ids, centre, length)  # (n, length, 4)
            out.update({k: lp[j] for j, k in enumerate(keys)})
        return out

    # ---- several sites per tile window ----
    def _shared_features(self, todo: list[SiteScores]) -> tuple[dict, dict]:
        tiles: dict[tuple, tuple[str, dict[int, None]]] = {}  # window key -> (sequence, centres)
        alts: dict[tuple[str, int], None] = {}
        for s in todo:
            p = s.plan
            tiles.setdefault(p.window_key, (p.ref_seq, {}))[1][p.centre] = None
            for seq in p.alt_seqs.values():
                alts[(seq, p.centre)] = None
        keys = list(tiles)
        centres = [np.fromiter(tiles[k][1], np.int64) for k in keys]
        pooled = self._pooled_at([tiles[k][0] for k in keys], centres)
        ref = {
            (*k, int(c)): f
            for k, cs, fs in zip(keys, centres, pooled, strict=True)
            for c, f in zip(cs, fs, strict=True)
        }
        alt_keys = list(alts)
        alt_pooled = self._pooled_at([seq for seq, _ in alt_keys], [np.array([c]) for _, c in alt_keys])
        return ref, {k: f[0] for k, f in zip(alt_keys, alt_pooled, strict=True)}

    def _pooled_at(self, seqs: list[str], centres: list[np.ndarray]) -> list[np.ndarray]:
        if not seqs:
            return []
        ids = np.stack([encode(s) for s in seqs])  # (N, W)
        return self.engine.pooled_features_at(ids, centres, self.spec.flank, self.spec.layer, self.spec.rc_mode)

    def _shared_masked(self, todo: list[SiteScores]) -> dict:
        """Masked passes per tile: spans sorted by position, each put in the first pass where it starts at
        least ``min_spacing`` bp after that pass's last span ends; one forward per pass."""
        spans: dict[tuple, dict[tuple[int, int], None]] = {}  # window key -> {(start, length)}
        seqs: dict[tuple, str] = {}
        for s in todo:
            p = s.plan
            if p.masked:
                spans.setdefault(p.window_key, {})[(p.centre, len(p.variant.ref))] = None
                seqs[p.window_key] = p.ref_seq
        rows, where = [], []  # one masked window per pass; (window key, spans) of each
        for key, tile_spans in spans.items():
            passes: list[list[tuple[int, int]]] = []
            for start, length in sorted(tile_spans):
                target = next((q for q in passes if start - sum(q[-1]) >= self.min_spacing), None)
                if target is None:
                    passes.append(target := [])
                target.append((start, length))
            base = encode(seqs[key])  # (W,)
            for q in passes:
                ids = base.copy()
                for start, length in q:
                    ids[start : start + length] = MASK
                rows.append(ids)
                where.append((key, q))
        if not rows:
            return {}
        positions = [np.concatenate([np.arange(a, a + n) for a, n in q]) for _, q in where]
        lps = self.engine.masked_logprobs_at(np.stack(rows), positions)  # per pass (k, 4)
        out = {}
        for (key, q), lp in zip(where, lps, strict=True):
            offset = 0
            for start, length in q:
                out[(*key, start, length)] = lp[offset : offset + length]
                offset += length
        return out


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cos(a, b), as |a/|a| - b/|b||^2 / 2 in float64: no cancellation when a and b nearly agree
    (in float32, 1 - a.b / (|a||b|) loses most digits at the 1e-6 distances of single-base changes)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 1.0
    d = a / na - b / nb
    return float(0.5 * np.dot(d, d))


def _llr(logp: np.ndarray, ref: str, alt: str) -> float | None:
    """Sum over positions where ref and alt differ of log P(alt base) - log P(ref base)."""
    total = 0.0
    for j, (r, a) in enumerate(zip(ref, alt, strict=True)):
        if r == a:
            continue
        if r not in _BASE_INDEX or a not in _BASE_INDEX:
            return None
        total += float(logp[j, _BASE_INDEX[a]] - logp[j, _BASE_INDEX[r]])
    return total


def scored_chunks(
    items: Iterable[tuple[Variant, T]],
    planner: SitePlanner,
    featuriser: Featuriser,
    chunk_sites: int,
    check: Callable[[list[SitePlan]], None] | None = None,
) -> Iterator[list[tuple[SiteScores, T]]]:
    """Plan and score (variant, payload) pairs about ``chunk_sites`` at a time, in input order.

    Memory is bounded by a chunk. ``check(plans)`` sees each chunk's plans before the model runs. With
    shared windows a chunk ends at a tile boundary (the sites of the tile still being read wait for the
    next chunk), so a tile's masked passes hold all its sites whatever the chunk size, for sorted input;
    a tile with more than 4 x ``chunk_sites`` sites is cut.
    """
    shared = planner.layout.core is not None
    plans: list[SitePlan] = []
    payloads: list[T] = []
    for variant, payload in items:
        plans.append(planner.plan(variant))
        payloads.append(payload)
        if len(plans) >= chunk_sites:
            cut = _tile_boundary(plans, 4 * chunk_sites) if shared else len(plans)
            if cut:
                yield _score(plans[:cut], payloads[:cut], featuriser, check, shared)
                plans, payloads = plans[cut:], payloads[cut:]
    if plans:
        yield _score(plans, payloads, featuriser, check, shared)


def _tile_boundary(plans: list[SitePlan], limit: int) -> int:
    """How many plans to score now: all but the trailing run in the last scorable plan's tile (unscorable
    records inside that run wait with it); 0: wait for more."""
    last = next((p.window_key for p in reversed(plans) if p.scorable), None)
    cut = len(plans)
    while cut and (not plans[cut - 1].scorable or plans[cut - 1].window_key == last):
        cut -= 1
    return cut if cut or len(plans) < limit else len(plans)


def _score(plans, payloads, featuriser: Featuriser, check, shared: bool) -> list:
    if check is not None:
        check(plans)
    return list(zip(featuriser.run(plans, shared), payloads, strict=True))
