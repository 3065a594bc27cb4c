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
    """Runs plans through a ``WindowEngine`` for the features of ``spec`` (and CAD_LLR when ``llr``)."""

    def __init__(self, engine: WindowEngine, spec: EmbeddingSpec, llr: bool = True) -> None:
        self.engine = engine
        self.spec = spec
        self.llr = llr
        self._ref_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def run(self, plans: list[SitePlan]) -> list[SiteScores]:
        """Score one chunk of plans (in order)."""
        out = [SiteScores.empty(p) for p in plans]
        todo = [s for s in out if s.plan.scorable]
        if not todo:
            return out
        centre = todo[0].plan.centre
        assert all(s.plan.centre == centre for s in todo), "one chunk, one window layout"
        ref_keys: dict[tuple, int] = {}
        alt_keys: dict[str, int] = {}
        mask_keys: dict[tuple, int] = {}
        for s in todo:
            p = s.plan
            if p.window_key not in self._ref_cache:
                ref_keys.setdefault(p.window_key, len(ref_keys))
            for seq in p.alt_seqs.values():
                alt_keys.setdefault(seq, len(alt_keys))
            if p.masked and self.llr:
                mask_keys.setdefault(p.mask_key, len(mask_keys))
        by_ref = {s.plan.window_key: s.plan.ref_seq for s in todo}
        ref_feats = self._pooled([by_ref[k] for k in ref_keys], centre)
        for k, idx in ref_keys.items():
            self._ref_cache[k] = ref_feats[idx]
            if len(self._ref_cache) > REF_CACHE_WINDOWS:
                self._ref_cache.popitem(last=False)
        alt_feats = self._pooled(list(alt_keys), centre)
        mask_lp = self._masked_logprobs(mask_keys, by_ref, centre)
        for s in todo:
            p = s.plan
            rf = self._ref_cache[p.window_key]
            s.ref_feat = rf
            ref_allele = p.variant.ref.upper()
            for i, seq in p.alt_seqs.items():
                alt = p.variant.alts[i].upper()
                af = alt_feats[alt_keys[seq]]
                s.alt_feats[i] = af
                s.cos[i] = float(1.0 - np.dot(rf, af) / (np.linalg.norm(rf) * np.linalg.norm(af) + 1e-12))
                if len(alt) == len(ref_allele) and self.llr:
                    s.llr[i] = _llr(mask_lp[p.mask_key], ref_allele, alt)
        return out

    def _pooled(self, seqs: list[str], centre: int) -> np.ndarray:
        if not seqs:
            return np.zeros((0, 1), np.float32)
        ids = np.stack([encode(s) for s in seqs])  # (N, W)
        return self.engine.pooled_features(ids, centre, self.spec.flank, self.spec.layer, self.spec.rc_mode)

    def _masked_logprobs(self, mask_keys: dict[tuple, int], by_ref: dict[tuple, str], centre: int) -> dict:
        """log P over ACGT at each masked span, (length, 4) per mask key; one batch per masked length."""
        out = {}
        for length in sorted({k[2] for k in mask_keys}):
            keys = [k for k in mask_keys if k[2] == length]
            ids = np.stack([encode(by_ref[(k[0], k[1])]) for k in keys])  # (n, W)
            ids[:, centre : centre + length] = MASK
            lp = self.engine.masked_logprobs(ids, centre, length)  # (n, length, 4)
            out.update({k: lp[j] for j, k in enumerate(keys)})
        return out


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
    """Plan and score (variant, payload) pairs ``chunk_sites`` at a time, in input order.

    Memory is bounded by a chunk. ``check(plans)`` sees each chunk's plans before the model runs.
    """
    plans: list[SitePlan] = []
    payloads: list[T] = []
    for variant, payload in items:
        plans.append(planner.plan(variant))
        payloads.append(payload)
        if len(plans) >= chunk_sites:
            yield _score(plans, payloads, featuriser, check)
            plans, payloads = [], []
    if plans:
        yield _score(plans, payloads, featuriser, check)


def _score(plans, payloads, featuriser: Featuriser, check) -> list:
    if check is not None:
        check(plans)
    return list(zip(featuriser.run(plans), payloads, strict=True))
