"""Model configuration: the Hugging Face ``config.json`` of Caduceus as a frozen dataclass."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from caduceus_cli.errors import ConfigError
from caduceus_cli.tokenizer import COMPLEMENT_MAP, VOCAB_SIZE

DEFAULT_SSM_CFG: dict[str, Any] = {
    "d_state": 16,
    "d_conv": 4,
    "expand": 2,
    "dt_rank": "auto",
    "dt_min": 0.001,
    "dt_max": 0.1,
    "dt_init": "random",
    "dt_scale": 1.0,
    "dt_init_floor": 1e-4,
    "conv_bias": True,
    "bias": False,
}


@dataclass(frozen=True)
class CaduceusConfig:
    """Architecture of a Caduceus model, field names as in the published ``config.json``.

    ``max_seq_len`` is this project's addition: the training length, used as the
    default scoring window. Unknown keys of a loaded file are kept in ``extra`` and
    written back unchanged.
    """

    d_model: int = 128
    n_layer: int = 4
    vocab_size: int = VOCAB_SIZE
    ssm_cfg: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SSM_CFG))
    rms_norm: bool = True
    residual_in_fp32: bool = False
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    norm_epsilon: float = 1e-5
    initializer_cfg: dict[str, Any] = field(
        default_factory=lambda: {
            "initializer_range": 0.02,
            "rescale_prenorm_residual": True,
            "n_residuals_per_layer": 1,
        }
    )
    bidirectional: bool = True
    bidirectional_strategy: str = "add"
    bidirectional_weight_tie: bool = True
    rcps: bool = True
    complement_map: dict[str, int] = field(default_factory=lambda: {str(i): c for i, c in enumerate(COMPLEMENT_MAP)})
    max_seq_len: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    # ---- derived sizes (paper names) ----
    @property
    def d_state(self) -> int:
        return int(self.ssm_cfg.get("d_state", 16))

    @property
    def d_conv(self) -> int:
        return int(self.ssm_cfg.get("d_conv", 4))

    @property
    def d_inner(self) -> int:
        return int(self.ssm_cfg.get("expand", 2)) * self.d_model

    @property
    def dt_rank(self) -> int:
        r = self.ssm_cfg.get("dt_rank", "auto")
        return math.ceil(self.d_model / 16) if r == "auto" else int(r)

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return self.vocab_size if self.vocab_size % m == 0 else self.vocab_size + m - self.vocab_size % m

    @property
    def hidden_size(self) -> int:
        """Width of ``last_hidden_state``: 2 * d_model for PS (two halves), d_model for Ph."""
        return 2 * self.d_model if self.rcps else self.d_model

    @property
    def complement_list(self) -> list[int]:
        return [int(self.complement_map[str(i)]) for i in range(len(self.complement_map))]

    def validate(self) -> None:
        """Raise ConfigError naming every unsupported value at once."""
        problems = []
        if not self.rms_norm:
            problems.append("rms_norm=false (LayerNorm) is not supported")
        if not self.bidirectional:
            problems.append("bidirectional=false is not supported")
        if self.bidirectional_strategy not in ("add", "ew_multiply"):
            problems.append(f"bidirectional_strategy={self.bidirectional_strategy!r} (expected 'add' or 'ew_multiply')")
        if not self.bidirectional_weight_tie:
            problems.append("bidirectional_weight_tie=false is not supported")
        if self.ssm_cfg.get("bias", False):
            problems.append("ssm_cfg.bias=true (biased in/out projections) is not supported")
        if not self.ssm_cfg.get("conv_bias", True):
            problems.append("ssm_cfg.conv_bias=false is not supported")
        if self.d_model <= 0 or self.n_layer <= 0:
            problems.append(f"d_model={self.d_model}, n_layer={self.n_layer} must be positive")
        if self.rcps and len(self.complement_map) != self.padded_vocab_size:
            problems.append(f"complement_map has {len(self.complement_map)} entries, expected {self.padded_vocab_size}")
        if problems:
            raise ConfigError("unsupported model config: " + "; ".join(problems))

    # ---- (de)serialisation ----
    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CaduceusConfig":
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in raw.items() if k in known}
        extra = {k: v for k, v in raw.items() if k not in known}
        ssm = dict(DEFAULT_SSM_CFG)
        ssm.update(kwargs.get("ssm_cfg") or {})
        kwargs["ssm_cfg"] = ssm
        try:
            cfg = cls(**kwargs, extra=extra)
        except TypeError as exc:  # pragma: no cover - dataclass signature errors
            raise ConfigError(f"bad config: {exc}") from exc
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> "CaduceusConfig":
        try:
            raw = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); re-download the model"
            ) from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        d = asdict(self)
        d.pop("extra")
        if d["max_seq_len"] is None:
            d.pop("max_seq_len")
        out.update(d)
        out.setdefault("model_type", "caduceus")
        out.setdefault("architectures", ["CaduceusForMaskedLM"])
        return out

    def with_(self, **changes: Any) -> "CaduceusConfig":
        return replace(self, **changes)
