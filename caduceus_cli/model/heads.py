"""RC-invariant sequence heads on a Caduceus backbone: classification and regression.

Features are per-position and strand-averaged before pooling, so the head sees the same
vector for a sequence and for its reverse complement:

- PS: one pass; the forward half and the RC half flipped back are averaged (``rc_average_ps``).
- Ph: the forward pass and the pass over the reverse complement, re-aligned, are averaged
  (``rc_average_ph``); in training the RC pass is optional (``conjoin_train``; without it the
  trainer augments with random reverse complements), in evaluation it is always run.

Pooling (mean or max over the non-padding positions) is symmetrised: ``(pool(f) + pool(flip_L f)) / 2``,
so the two strands give the same numbers bit for bit, not only up to rounding.

A fine-tuned model directory is a pretrained-model directory (``config.json`` +
``model.safetensors``, loadable by ``load_model``) plus ``head.json`` and ``head.safetensors``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from caduceus_cli.errors import ModelLoadError
from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.loading import load_model, resolve_model_dir, save_model
from caduceus_cli.model.rc import rc_average_ph, rc_average_ps
from caduceus_cli.tokenizer import PAD, reverse_complement_ids

HEAD_CONFIG = "head.json"
HEAD_WEIGHTS = "head.safetensors"
TASKS = ("classification", "regression")
POOLS = ("mean", "max")


@dataclass(frozen=True)
class HeadConfig:
    """What the head predicts: ``classes`` (classification) or ``targets`` (regression), and how it pools.

    Regression targets are standardised in training; ``target_mean``/``target_std`` undo it.
    """

    task: str = "classification"
    classes: tuple[str, ...] = ("0", "1")
    targets: tuple[str, ...] = ()
    pool: str = "mean"
    conjoin_train: bool = False  # Ph: run the RC pass in training too (always in evaluation)
    dropout: float = 0.0
    target_mean: tuple[float, ...] = ()
    target_std: tuple[float, ...] = ()
    window: int = 0  # the training length; longer inputs are centre-cropped to it
    info: dict = field(default_factory=dict, compare=False)

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else len(self.targets)

    @property
    def output_names(self) -> list[str]:
        """Column names of the outputs: ``prob_<class>`` or the target names."""
        return [f"prob_{c}" for c in self.classes] if self.task == "classification" else list(self.targets)

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ModelLoadError(f"head task {self.task!r}: expected one of {', '.join(TASKS)}")
        if self.pool not in POOLS:
            raise ModelLoadError(f"head pool {self.pool!r}: expected one of {', '.join(POOLS)}")
        if self.n_outputs < 1 or (self.task == "classification" and self.n_outputs < 2):
            raise ModelLoadError(f"head has {self.n_outputs} outputs: a classifier needs 2 or more classes")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HeadConfig:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for k in ("classes", "targets", "target_mean", "target_std"):
            if k in kw:
                kw[k] = tuple(kw[k])
        cfg = cls(**kw)
        cfg.validate()
        return cfg


def pool_positions(f: torch.Tensor, keep: torch.Tensor, how: str) -> torch.Tensor:
    """Pool (B, L, D) over the positions where ``keep`` (B, L) is true -> (B, D)."""
    k = keep.unsqueeze(-1).to(f.dtype)
    if how == "max":
        return f.masked_fill(~keep.unsqueeze(-1), float("-inf")).amax(1)
    return (f * k).sum(1) / k.sum(1).clamp(min=1)


def symmetric_pool(f: torch.Tensor, keep: torch.Tensor, how: str) -> torch.Tensor:
    """``(pool(f) + pool(flip_L f)) / 2``: the same bits for a feature map and its mirror image."""
    return (pool_positions(f, keep, how) + pool_positions(f.flip(1), keep.flip(1), how)) * 0.5


class SequenceHeadModel(nn.Module):
    """A Caduceus backbone (the masked-LM model, LM head unused) + an RC-invariant linear head.

    ``forward(ids)`` -> (B, K) raw outputs: class logits or standardised targets.
    """

    def __init__(self, backbone: CaduceusForMaskedLM, head: HeadConfig) -> None:
        super().__init__()
        head.validate()
        self.lm = backbone
        self.head_config = head
        self.rcps = backbone.config.rcps
        self.dropout = nn.Dropout(head.dropout)
        self.head = nn.Linear(backbone.config.d_model, head.n_outputs)

    @property
    def config(self):
        return self.lm.config

    def features(self, ids: torch.Tensor, conjoin: bool | None = None) -> torch.Tensor:
        """Strand-averaged per-position features (B, L, D); ``conjoin`` (Ph) defaults to 'not training'."""
        hidden = self.lm(ids, return_logits=False).last_hidden_state
        if self.rcps:
            return rc_average_ps(hidden)
        if conjoin is None:
            conjoin = self.head_config.conjoin_train or not self.training
        if not conjoin:
            return hidden
        hidden_rc = self.lm(reverse_complement_ids(ids), return_logits=False).last_hidden_state
        return rc_average_ph(hidden, hidden_rc)

    def forward(self, ids: torch.Tensor, conjoin: bool | None = None) -> torch.Tensor:
        f = self.features(ids, conjoin).float()
        pooled = symmetric_pool(f, ids != PAD, self.head_config.pool)
        return self.head(self.dropout(pooled))

    def transform(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> class probabilities (softmax) or targets in their own units."""
        if self.head_config.task == "classification":
            return torch.softmax(raw.float(), -1)
        mean = torch.tensor(self.head_config.target_mean or [0.0] * raw.shape[-1], device=raw.device)
        std = torch.tensor(self.head_config.target_std or [1.0] * raw.shape[-1], device=raw.device)
        return raw.float() * std + mean


def head_outputs(
    model: SequenceHeadModel,
    ids: np.ndarray | torch.Tensor,
    batch_size: int = 8,
    bf16: bool = False,
    raw: bool = False,
) -> np.ndarray:
    """RC-invariant outputs of token windows (N, L) -> (N, K) float32: probabilities / targets (``raw``: logits).

    For ``score-vcf``-style use: the windows of a sequence and of its reverse complement give the
    same row. Runs in eval mode on the model's device (Ph: forward + RC pass).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids_t = torch.as_tensor(ids, dtype=torch.long)
    out = []
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        with torch.inference_mode():
            for i in range(0, len(ids_t), max(1, batch_size)):
                with ctx:
                    y = model(ids_t[i : i + batch_size].to(device))
                out.append((y.float() if raw else model.transform(y)).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, model.head_config.n_outputs), np.float32)


def centre_crops(ids: np.ndarray, window: int) -> list[np.ndarray]:
    """The centre ``window`` of a token array: one crop, or two (shifted by one base) when the excess is odd,
    so that the crops of a sequence's reverse complement are the reverse complements of its crops."""
    excess = len(ids) - window
    if window <= 0 or excess <= 0:
        return [ids]
    lo = excess // 2
    if excess % 2 == 0:
        return [ids[lo : lo + window]]
    return [ids[lo : lo + window], ids[lo + 1 : lo + 1 + window]]


def sequence_outputs(
    model: SequenceHeadModel,
    seqs: list[np.ndarray],
    window: int | None = None,
    batch_size: int = 8,
    bf16: bool = False,
    raw: bool = False,
) -> np.ndarray:
    """RC-invariant outputs of variable-length token arrays -> (N, K) float32.

    Sequences longer than ``window`` (default: the head's training length) are centre-cropped (two
    crops averaged when the excess is odd); sequences are batched by length, so none is padded.
    """
    window = model.head_config.window if window is None else window
    crops: list[np.ndarray] = []
    owner: list[int] = []
    for i, s in enumerate(seqs):
        for c in centre_crops(np.asarray(s, np.int64), window):
            crops.append(c)
            owner.append(i)
    by_len: dict[int, list[int]] = {}
    for j, c in enumerate(crops):
        by_len.setdefault(len(c), []).append(j)
    k = model.head_config.n_outputs
    out = np.zeros((len(seqs), k), np.float64)
    counts = np.zeros(len(seqs), np.int64)
    for idx in by_len.values():
        ys = head_outputs(model, np.stack([crops[j] for j in idx]), batch_size, bf16, raw)
        for j, y in zip(idx, ys, strict=True):
            out[owner[j]] += y
            counts[owner[j]] += 1
    return (out / np.maximum(1, counts)[:, None]).astype(np.float32)


def save_finetuned(model: SequenceHeadModel, directory: str | os.PathLike, extra_config: dict | None = None) -> Path:
    """The backbone as a model directory (``load_model`` reads it) + head.json + head.safetensors."""
    out = save_model(model.lm, directory, extra_config)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.head.state_dict().items()}
    tmp = out / (HEAD_WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / HEAD_WEIGHTS)
    (out / HEAD_CONFIG).write_text(json.dumps(model.head_config.to_dict(), indent=2, sort_keys=True) + "\n")
    return out


def head_sha256(directory: str | os.PathLike) -> str:
    """sha256 over a fine-tuned model's head files (config and weights; the backbone's have their own)."""
    h = hashlib.sha256()
    for name in (HEAD_CONFIG, HEAD_WEIGHTS):
        h.update(name.encode())
        h.update((Path(directory) / name).read_bytes())
    return h.hexdigest()


def is_finetuned(directory: str | os.PathLike) -> bool:
    return (Path(directory) / HEAD_CONFIG).exists()


def load_finetuned(
    source: str | os.PathLike, device: str | torch.device = "cpu", backend: str = "auto"
) -> SequenceHeadModel:
    """Backbone + head of a fine-tuned model directory, in eval mode on ``device``."""
    directory = resolve_model_dir(source)
    if not is_finetuned(directory):
        raise ModelLoadError(
            f"{directory}: no {HEAD_CONFIG}; this is a pretrained model, not one made by `finetune --method full`"
        )
    model = attach_head(load_model(directory, backend=backend), directory)
    model.source = str(source)
    return model.to(device).eval()


def attach_head(backbone: CaduceusForMaskedLM, directory: str | os.PathLike) -> SequenceHeadModel:
    """The head saved in ``directory`` on an already loaded ``backbone`` (that directory's), in eval mode."""
    directory = Path(directory)
    try:
        head_cfg = HeadConfig.from_dict(json.loads((directory / HEAD_CONFIG).read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelLoadError(f"{directory / HEAD_CONFIG}: not a head config ({exc})") from exc
    model = SequenceHeadModel(backbone, head_cfg)
    try:
        model.head.load_state_dict(load_file(str(directory / HEAD_WEIGHTS)))
    except Exception as exc:
        raise ModelLoadError(f"{directory / HEAD_WEIGHTS}: cannot load the head ({type(exc).__name__}: {exc})") from exc
    model.head.to(next(backbone.parameters()).device)
    model.source = str(directory)
    model.source_dir = directory
    return model.eval()
