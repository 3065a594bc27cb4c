"""What a feature is: the window, pooling, layer and strand handling, resolved in one place.

``spec_for`` turns a model and the user's (possibly unset) options into an
``EmbeddingSpec``: every default (window = the model's training length, flank =
768, the paper's pooling half-width) is decided here and nowhere else. The spec
is stored with embeddings and probes so features of different models or settings
are never mixed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from caduceus_cli import __version__
from caduceus_cli.choices import Pool, RcMode, choice
from caduceus_cli.errors import OptionError
from caduceus_cli.model.loading import training_length

log = logging.getLogger(__name__)

MAX_WINDOW = 131_072
DEFAULT_FLANK = 768  # the paper's pooling half-width
FALLBACK_WINDOW = 1024


@dataclass(frozen=True)
class EmbeddingSpec:
    """What an embedding is: enough to refuse mixing features of different models or settings."""

    kind: str  # variant | sequence | region
    model: str
    model_sha256: str
    window: int
    flank: int
    pool: str
    layer: int
    rc_mode: str
    dim: int
    version: str = __version__

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EmbeddingSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def mismatch(self, other: EmbeddingSpec) -> list[str]:
        """Differences that change the features (empty when compatible)."""
        keys = ("model_sha256", "window", "flank", "pool", "layer", "rc_mode", "dim")
        return [f"{k} {getattr(self, k)} vs {getattr(other, k)}" for k in keys if getattr(self, k) != getattr(other, k)]


def resolve_window(model, requested: int | None) -> int:
    """The window in bp: ``requested``, else the model's training length; checked against 1..MAX_WINDOW."""
    w = requested
    if w is None:
        w = training_length(model)
        if not w:
            log.warning("model config has no max_seq_len; using a %s bp window (set --window)", f"{FALLBACK_WINDOW:,}")
            w = FALLBACK_WINDOW
    w = int(w)
    if not 1 <= w <= MAX_WINDOW:
        raise OptionError(f"--window {w}: must be between 1 and {MAX_WINDOW}")
    return w


def feature_dim(config, rc_mode: RcMode | str = RcMode.AVG) -> int:
    """Width F of per-position features for an RC mode ('both' keeps the two strands side by side)."""
    return config.d_model * (2 if choice(RcMode, rc_mode, "--rc-mode") == RcMode.BOTH else 1)


def check_layer(config, layer: int) -> int:
    if not -1 <= layer <= config.n_layer:
        raise OptionError(f"--layer {layer}: this model has layers 0..{config.n_layer} (-1 = last)")
    return layer


def spec_for(
    model,
    sha256: str,
    kind: str,
    *,
    window: int | None = None,
    flank: int | None = None,
    pool: Pool | str = Pool.CENTRE,
    layer: int = -1,
    rc_mode: RcMode | str = RcMode.AVG,
    default_flank: int = DEFAULT_FLANK,
) -> EmbeddingSpec:
    """The spec of ``kind`` features ('variant', 'sequence', 'region') from ``model`` with these options.

    Variant features are [ref pooled, alt pooled] (twice the per-position width). A
    variant pooled by 'mean' averages its whole window, so its flank becomes the window. ``flank`` is the
    user's (checked against the window), ``default_flank`` the one used without it.
    """
    cfg = model.config
    w = resolve_window(model, window)
    pool = choice(Pool, pool, "--pool")
    rc_mode = choice(RcMode, rc_mode, "--rc-mode")
    check_layer(cfg, layer)
    f = default_flank if flank is None else int(flank)
    if f < 0 or (flank is not None and f > w):  # a default (the paper's, a probe's) is kept whatever the window
        raise OptionError(f"--flank {f}: must be between 0 and the window ({w} bp)")
    if kind == "variant" and pool == Pool.MEAN:
        f = w
    dim = feature_dim(cfg, rc_mode) * (2 if kind == "variant" else 1)
    return EmbeddingSpec(kind, model.source, sha256, w, f, pool.value, layer, rc_mode.value, dim)


def variant_spec(model, sha256: str, opts) -> EmbeddingSpec:
    """The paper's variant features (pooled at the variant) with ``opts``' window, flank, layer and strands
    (``opts``: an ``InferenceOptions``)."""
    return spec_for(
        model,
        sha256,
        "variant",
        window=opts.window,
        flank=opts.flank,
        pool=Pool.CENTRE,
        layer=opts.layer,
        rc_mode=opts.rc_mode,
    )
