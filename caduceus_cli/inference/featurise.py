"""The featuriser: runs the model on planned sites and turns its outputs into per-ALT features and scores.

Per ALT of a planned site (each ALT scored where the planner put it: SNVs and MNVs at the VCF
position, indels left-aligned, see ``planner``):

- CAD_LLR, SNV and MNV: log P(alt) - log P(ref) over A/C/G/T at the REF positions, all
  masked in one forward of the reference window, summed over the positions where the
  alleles differ, averaged over both strands.
- CAD_LLR, indel: PLL(alt) - PLL(ref), pseudo-log-likelihoods of the alternate and the
  reference window over the changed bases plus ``PLL_FLANK`` (3) bases each side (``pll``): the
  span masked in one forward per window (default), or each base in a forward of its own (13
  masked forwards for a 1-bp indel); in shared tiles a tile's indels share span forwards.
- CAD_COS (SNV, MNV, indel): cosine distance of the RC-averaged embeddings of the
  reference and alternate windows, mean-pooled over +/- flank positions around the
  variant's first (an indel's: anchor) base.
- The paper's variant feature: [ref pooled, alt pooled] (``SiteScores.variant_features``).

Within a chunk identical windows run once (multi-allelic sites share the reference
and masked windows); reference-window features are also cached across chunks.
``scored_chunks`` plans and tokenises the next chunk on a worker thread while the
model runs the current one.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from caduceus_cli.inference.chunking import Chunker, chunk_key
from caduceus_cli.inference.engine import WindowEngine
from caduceus_cli.inference.passes import default_cluster, run_passes
from caduceus_cli.inference.planner import AllelePlan, SitePlan, SitePlanner
from caduceus_cli.inference.pll import INDEL_SPACING, PLL_FLANK, IndelPll
from caduceus_cli.inference.prefetch import locked, prefetched
from caduceus_cli.inference.spec import EmbeddingSpec
from caduceus_cli.inference.tileplan import PassPlan, plan_passes, read_passes
from caduceus_cli.io.variant import Variant
from caduceus_cli.tokenizer import MASK, encode_u8

log = logging.getLogger(__name__)

_BASE_INDEX = {"A": 0, "C": 1, "G": 2, "T": 3}
REF_CACHE_WINDOWS = 4096
T = TypeVar("T")
Tokens = dict[str, np.ndarray]  # window -> its token ids (W,), uint8


@dataclass
class SiteScores:
    """A plan with what the model made of it: per-ALT scores (None = not scored) and pooled features."""

    plan: SitePlan
    llr: list[float | None]
    cos: list[float | None]
    ref_feats: dict[int, np.ndarray] = field(default_factory=dict)  # ALT index -> (F,) pooled reference features
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
        return np.concatenate([self.ref_feats[i], self.alt_feats[i]])


def tokenise(plans: list[SitePlan], alternates: bool = True) -> Tokens:
    """Token ids, as uint8, of the windows the plans' ALTs are scored in: reference windows, and alternate
    windows (every ALT's with ``alternates``; else only indels', which forwards of their own may read)."""
    out: Tokens = {}
    for p in plans:
        for a in p.alleles.values():
            for seq in (a.ref_seq, a.seq) if alternates or not a.masked else (a.ref_seq,):
                if seq not in out:
                    out[seq] = encode_u8(seq)
    return out


class Featuriser:
    """Runs plans through a ``WindowEngine``: pooled features and CAD_COS (``features``), CAD_LLR (``llr``).

    Centred plans (one window per site) batch windows across the chunk. Shared plans (several sites per
    tile window, see ``planner.WindowLayout``) run one reference forward per tile pooled at each ALT's
    position, one alternate forward per ALT, and masked forwards in which every SNV/MNV of the tile is
    masked at once, except that sites closer than ``min_spacing`` bp go to further passes. Indels get
    their masked forwards from ``pll.IndelPll`` (``indel_flank``, ``indel_masking``), in either mode; in
    shared tiles with 'span' masking a tile's indels share masked forwards with each other and with its
    SNVs (``IndelPll.plan_tiles``, ``passes.pack``: an indel's span at least ``indel_spacing`` and
    ``min_spacing`` bp from the other spans of its forward, so an SNV that close goes to a further pass
    too) unless ``batch_indels`` is off (then two forwards per indel, as centred). A tile's first
    reference and first alternate pass run on the whole window, its further passes in windows of
    ``cluster`` bp (``passes.crops``; default ``passes.default_cluster``); an indel's two PLLs come from
    windows of one kind (``tileplan``).
    """

    def __init__(
        self,
        engine: WindowEngine,
        spec: EmbeddingSpec,
        llr: bool = True,
        features: bool = True,
        min_spacing: int = 0,
        indel_flank: int = PLL_FLANK,
        indel_masking: str = "span",
        batch_indels: bool = True,
        indel_spacing: int = INDEL_SPACING,
        cluster: int | None = None,
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.llr = llr
        self.features = features
        self.min_spacing = min_spacing
        self.indels = IndelPll(engine, indel_flank, indel_masking)
        self.batch_indels = batch_indels
        self.indel_spacing = indel_spacing
        self.cluster = default_cluster(spec.window, cluster)
        self._ref_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._tokens: Tokens = {}

    def run(
        self,
        plans: list[SitePlan],
        shared: bool = False,
        tokens: Tokens | None = None,
        prepared: PassPlan | None = None,
    ) -> list[SiteScores]:
        """Score one chunk of plans (in order); ``tokens``: their windows already tokenised (``tokenise``);
        ``prepared``: their masked passes already planned (``prepare``)."""
        out = [SiteScores.empty(p) for p in plans]
        alleles = [(s, i, a) for s in out for i, a in s.plan.alleles.items()]
        if not alleles:
            return out
        self._tokens = tokens or {}
        try:
            return self._run(out, [a for _, _, a in alleles], alleles, shared, prepared)
        finally:
            self._tokens = {}

    def _run(
        self, out: list[SiteScores], plans: list[AllelePlan], alleles: list, shared: bool, prepared: PassPlan | None
    ) -> list[SiteScores]:
        ref_feat: dict = {}
        alt_feat: dict = {}
        if self.features:
            ref_feat, alt_feat = self._shared_features(plans) if shared else self._centred_features(plans)
        mask_lp: dict = {}
        indel_llr: dict[int, float | None] = {}
        if self.llr:
            indels = [a for a in plans if not a.masked]
            values = None
            if shared:
                pp = prepared if prepared is not None else self.prepare([s.plan for s in out], shared)
                if pp.batched and [id(a) for a in pp.indels] != [id(a) for a in indels]:
                    raise ValueError("the prepared passes are another chunk's")
                lps = run_passes(self.engine, pp.passes, self._encode, self.cluster)
                mask_lp, values = read_passes(pp, lps, self.indels, self._encode)
            else:
                mask_lp = self._masked_logprobs([a for a in plans if a.masked])
            if values is None:
                values = self.indels.score(indels, self._encode)
            indel_llr = dict(zip(map(id, indels), values, strict=True))
        for s, i, a in alleles:
            if self.features:
                s.ref_feats[i] = ref_feat[a.feature_key]
                s.alt_feats[i] = alt_feat[(a.seq, a.centre)]
                s.cos[i] = cosine_distance(s.ref_feats[i], s.alt_feats[i])
            if self.llr:
                s.llr[i] = _llr(mask_lp[a.mask_key], a.ref, a.alt) if a.masked else indel_llr[id(a)]
        return out

    def _encode(self, seq: str) -> np.ndarray:
        """Token ids (W,) of a window: from the chunk's ``tokens`` when given, else encoded now."""
        ids = self._tokens.get(seq)
        return encode_u8(seq) if ids is None else ids

    def _ids(self, seqs: list[str]) -> np.ndarray:
        return np.stack([self._encode(s) for s in seqs]) if seqs else np.zeros((0, 0), np.uint8)  # (N, W)

    # ---- one window per site ----
    def _centred_features(self, plans: list[AllelePlan]) -> tuple[dict, dict]:
        centre = plans[0].centre
        ref_keys: dict[tuple, int] = {}
        alt_keys: dict[str, int] = {}
        by_ref: dict[tuple, str] = {}
        for a in plans:
            by_ref[a.feature_key] = a.ref_seq
            if a.feature_key not in self._ref_cache:
                ref_keys.setdefault(a.feature_key, len(ref_keys))
            alt_keys.setdefault(a.seq, len(alt_keys))
        ref_feats = self._pooled([by_ref[k] for k in ref_keys], centre)
        for k, idx in ref_keys.items():
            self._ref_cache[k] = ref_feats[idx]
        ref = {k: self._ref_cache[k] for k in by_ref}
        while len(self._ref_cache) > REF_CACHE_WINDOWS:  # oldest first, after this chunk's look-ups
            self._ref_cache.popitem(last=False)
        alt_feats = self._pooled(list(alt_keys), centre)
        return ref, {(seq, centre): alt_feats[i] for seq, i in alt_keys.items()}

    def _pooled(self, seqs: list[str], centre: int) -> np.ndarray:
        if not seqs:
            return np.zeros((0, 1), np.float32)
        return self.engine.pooled_features(self._ids(seqs), centre, self.spec.flank, self.spec.layer, self.spec.rc_mode)

    def _masked_logprobs(self, snvs: list[AllelePlan]) -> dict:
        """log P over ACGT at each masked span, (length, 4) per mask key; one batch per masked length."""
        by_ref = {a.mask_key: a.ref_seq for a in snvs}
        out = {}
        for length in sorted({k[3] for k in by_ref}):
            keys = [k for k in by_ref if k[3] == length]
            centre = keys[0][2]
            ids = self._ids([by_ref[k] for k in keys])  # (n, W)
            ids[:, centre : centre + length] = MASK
            lp = self.engine.masked_logprobs(ids, centre, length)  # (n, length, 4)
            out.update({k: lp[j] for j, k in enumerate(keys)})
        return out

    # ---- several sites per tile window ----
    def _shared_features(self, plans: list[AllelePlan]) -> tuple[dict, dict]:
        tiles: dict[tuple, tuple[str, dict[int, None]]] = {}  # window key -> (sequence, centres)
        alts: dict[tuple[str, int], None] = {}
        for a in plans:
            tiles.setdefault(a.window_key, (a.ref_seq, {}))[1][a.centre] = None
            alts[(a.seq, a.centre)] = None
        keys = list(tiles)
        centres = [np.fromiter(tiles[k][1], np.int64) for k in keys]
        pooled = self._pooled_at([tiles[k][0] for k in keys], centres, running=True)
        ref = {
            (*k, int(c)): f
            for k, cs, fs in zip(keys, centres, pooled, strict=True)
            for c, f in zip(cs, fs, strict=True)
        }
        alt_keys = list(alts)
        alt_pooled = self._pooled_at([seq for seq, _ in alt_keys], [np.array([c]) for _, c in alt_keys])
        return ref, {k: f[0] for k, f in zip(alt_keys, alt_pooled, strict=True)}

    def _pooled_at(self, seqs: list[str], centres: list[np.ndarray], running: bool = False) -> list[np.ndarray]:
        if not seqs:
            return []
        ids = self._ids(seqs)  # (N, W)
        spec = self.spec
        return self.engine.pooled_features_at(ids, centres, spec.flank, spec.layer, spec.rc_mode, running)

    def prepare(self, plans: list[SitePlan], shared: bool) -> PassPlan | None:
        """The chunk's shared-tile masked passes (``tileplan``), planned without the model (thread-safe: run on
        the prefetch worker); None when nothing is scored that way."""
        if not (shared and self.llr):
            return None
        batched = self.batch_indels and self.indels.masking == "span"
        return plan_passes(
            plans, self.indels, batched, self.min_spacing, self.indel_spacing, self.cluster, self.spec.window
        )


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
    prefetch: bool = True,
) -> Iterator[list[tuple[SiteScores, T]]]:
    """Plan and score (variant, payload) pairs about ``chunk_sites`` at a time, in input order.

    Reading, planning (reference fetches, shared-tile passes: ``Featuriser.prepare``) and tokenising run
    ``prefetch``-ed on a worker thread, one chunk ahead of the model (``prefetch.prefetched``: an error there
    is raised here, as it was raised); no record is read while the caller holds a chunk. Memory is bounded by
    three chunks. ``check(plans)`` sees each chunk's plans before the model runs.
    With shared windows a chunk ends at a tile boundary (the sites of the last tiles still being read
    wait for the next chunk), so a tile's masked passes hold all its sites whatever the chunk size, for
    sorted input; a tile with more than 4 x ``chunk_sites`` sites is cut.
    """
    shared = planner.layout.core is not None
    lock = threading.Lock()  # held while a record is read, and while the caller has a chunk (pysam: one thread)
    done = threading.Event()  # set when the caller stops: nothing more is read
    ready = _planned(locked(items, lock, done), planner, featuriser, chunk_sites)
    chunks = prefetched(ready) if prefetch else ready
    try:
        for plans, payloads, tokens, prepared in chunks:
            if check is not None:
                check(plans)
            scored = list(zip(featuriser.run(plans, shared, tokens, prepared), payloads, strict=True))
            with lock:
                yield scored
    finally:
        done.set()
        chunks.close()


def _planned(
    items: Iterable[tuple[Variant, T]], planner: SitePlanner, featuriser: Featuriser, chunk_sites: int
) -> Iterator[tuple]:
    """(plans, payloads, tokens, planned passes) of each chunk, in input order, cut by ``chunking.Chunker``."""
    chunker = Chunker(chunk_sites)
    layout = planner.layout
    shared = layout.core is not None
    plans: list[SitePlan] = []
    payloads: list[T] = []

    def chunk(upto: int) -> tuple:
        part = plans[:upto]
        tokens = tokenise(part, alternates=featuriser.features)  # LLR alone reads no SNV alternate window
        prepared = featuriser.prepare(part, shared)
        for p in prepared.tiles.alt_passes if prepared is not None else ():
            if p.seq not in tokens:  # a pass of one indel is that indel's alternate window, encoded above
                tokens[p.seq] = encode_u8(p.seq)
        return part, payloads[:upto], tokens, prepared

    for variant, payload in items:
        plans.append(planner.plan(variant))
        payloads.append(payload)
        if cut := chunker.push(chunk_key(layout, variant.chrom, variant.pos0)):
            yield chunk(cut)
            plans, payloads = plans[cut:], payloads[cut:]
    if plans:
        yield chunk(len(plans))
