"""The fine-tuning loop: a Caduceus backbone + RC-invariant head on labelled sequences.

AdamW with one learning rate for the head and one for the backbone (``freeze_backbone``:
the head alone), warm-up + cosine, clipping, bf16 autocast on GPU, gradient accumulation,
evaluation on the validation set every ``eval_every`` steps with early stopping
(``patience`` evaluations without improvement), checkpoints in ``checkpoints/step-*``,
``resume``, SIGTERM (checkpoint after the current step, return ``stopped``), and DDP
under ``torchrun`` (each rank takes its slice of every batch; every rank evaluates).

The data order is a pure function of (seed, step, micro-batch, rank), and the torch RNG
is checkpointed, so a resumed run continues exactly as the uninterrupted one.
The best model (by the validation metric) is kept in ``best/`` and is the result.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from caduceus_cli.errors import OptionError, TrainingError
from caduceus_cli.model.heads import SequenceHeadModel, load_finetuned, save_finetuned, sequence_outputs
from caduceus_cli.tokenizer import PAD, reverse_complement_ids
from caduceus_cli.training import loop
from caduceus_cli.training.metrics import classification_metrics, higher_is_better, regression_metrics
from caduceus_cli.training.optim import param_groups

log = logging.getLogger(__name__)

METRICS = {"classification": ("accuracy", "mcc", "auroc", "loss"), "regression": ("pearson", "spearman", "mse")}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning run (``steps`` 0: ``epochs`` passes over the training set)."""

    out_dir: str
    steps: int = 0
    epochs: int = 10
    batch_size: int = 16  # sequences per optimiser step per rank, before accumulation
    accumulate: int = 1
    lr: float = 1e-4  # backbone
    head_lr: float = 1e-3
    min_lr_ratio: float = 0.01
    warmup_frac: float = 0.1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    freeze_backbone: bool = False
    eval_every: int = 0  # steps; 0: once per epoch
    patience: int = 0  # evaluations without improvement before stopping; 0: never stop early
    metric: str = ""  # validation metric; '' : accuracy (classification) or pearson (regression)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    resume: bool = False
    log_every: int = 10


@dataclass(frozen=True)
class LabelledTokens:
    """Token arrays (variable lengths) and targets: class indices (N,) or standardised values (N, T)."""

    ids: list[np.ndarray]
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class TrainOutcome:
    step: int
    stopped: bool  # SIGTERM: checkpointed; resume continues
    early_stopped: bool
    best_step: int
    best_metric: float | None
    history: list[dict]


def collate(seqs: list[np.ndarray], window: int, rng: np.random.Generator | None) -> torch.Tensor:
    """(B, L) ids: sequences longer than ``window`` cropped (at random with ``rng``, else centred), shorter ones
    padded with [PAD] on both sides to the longest in the batch (pooling skips [PAD])."""
    crops = []
    for s in seqs:
        excess = len(s) - window
        if excess > 0:
            lo = int(rng.integers(0, excess + 1)) if rng is not None else excess // 2
            s = s[lo : lo + window]
        crops.append(s)
    L = max(len(s) for s in crops)
    out = np.full((len(crops), L), PAD, np.int64)
    for i, s in enumerate(crops):
        lo = (L - len(s)) // 2
        out[i, lo : lo + len(s)] = s
    return torch.from_numpy(out)


class FinetuneTrainer:
    def __init__(
        self, model: SequenceHeadModel, train: LabelledTokens, val: LabelledTokens | None, cfg: TrainConfig
    ) -> None:
        self.cfg = cfg
        self.rank, self.world, local = loop.dist_env()
        loop.init_distributed(self.world, cfg.device)
        self.device = loop.pick_train_device(cfg.device, local)
        self.bf16 = loop.bf16_for(cfg.precision, self.device)
        self.out = Path(cfg.out_dir)
        self.task = model.head_config.task
        self.window = model.head_config.window
        self.metric = cfg.metric or ("accuracy" if self.task == "classification" else "pearson")
        allowed = METRICS[self.task]
        if self.metric not in allowed:
            raise OptionError(f"--metric {self.metric}: for {self.task} use one of {', '.join(allowed)}")
        self.train_set, self.val_set = train, val
        if len(train) == 0:
            raise TrainingError("no training sequences")
        self.global_batch = cfg.batch_size * max(1, cfg.accumulate) * self.world
        self.steps_per_epoch = max(1, -(-len(train) // self.global_batch))
        self.total_steps = cfg.steps or cfg.epochs * self.steps_per_epoch
        self.eval_every = cfg.eval_every or self.steps_per_epoch
        self.model = model.to(self.device)
        for p in self.model.lm.parameters():
            p.requires_grad_(not cfg.freeze_backbone)
        groups = [dict(g, base_lr=cfg.head_lr) for g in param_groups(self.model.head, cfg.weight_decay)]
        if not cfg.freeze_backbone:
            groups += [dict(g, base_lr=cfg.lr) for g in param_groups(self.model.lm, cfg.weight_decay)]
        self.opt = loop.adamw(groups, cfg.betas, self.device)
        self.step, self.wall = 0, 0.0
        self.best_metric: float | None = None
        self.best_step, self.bad_evals = 0, 0
        self.history: list[dict] = []
        if cfg.resume:
            self._resume()
        self.ddp = (
            torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.world > 1
            else None
        )

    # ---- data order: a pure function of (seed, step, micro, rank) ----
    def _indices(self, step: int, micro: int) -> np.ndarray:
        n, b = len(self.train_set), self.cfg.batch_size
        start = ((step * max(1, self.cfg.accumulate) + micro) * self.world + self.rank) * b
        out = []
        pos = start
        while len(out) < b:
            epoch, offset = divmod(pos, n)
            perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(n)
            take = min(b - len(out), n - offset)
            out.extend(perm[offset : offset + take].tolist())
            pos += take
        return np.array(out)

    # ---- checkpoints ----
    def _state(self) -> dict:
        return {
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "wall_s": self.wall,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "history": self.history,
            "total_steps": self.total_steps,
            "torch_rng": torch.get_rng_state(),
            "config": asdict(self.cfg),
        }

    def save_checkpoint(self) -> Path | None:
        if self.rank != 0:
            return None
        ck = loop.checkpoint_dir(self.out, self.step)
        save_finetuned(self.model, ck)
        loop.write_state(ck, self._state())
        for old in self.out.glob("checkpoints/step-*"):  # keep the newest only
            if old != ck:
                shutil.rmtree(old, ignore_errors=True)
        log.info("checkpoint %s", ck)
        return ck

    def _resume(self) -> None:
        ck = loop.latest_checkpoint(self.out)
        if ck is None:
            log.warning("--resume: no checkpoint under %s; starting from scratch", self.out)
            return
        state = loop.read_state(ck)
        loaded = load_finetuned(ck, device=self.device, backend=self.model.lm.backend)
        if loaded.head_config.n_outputs != self.model.head_config.n_outputs:
            raise TrainingError(f"{ck}: checkpoint has another head (outputs); use another --output")
        try:
            self.model.load_state_dict(loaded.state_dict())
        except RuntimeError as exc:
            raise TrainingError(f"{ck}: checkpoint was made with another model; use another --output") from exc
        self.model.lm.tie_weights()
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.wall = state["step"], state["wall_s"]
        self.best_metric, self.best_step, self.bad_evals = state["best_metric"], state["best_step"], state["bad_evals"]
        self.history = list(state["history"])
        self.total_steps = state["total_steps"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at step %d", ck, self.step)

    # ---- steps ----
    def _loss(self, ids: torch.Tensor, y: np.ndarray, gen: torch.Generator, model) -> torch.Tensor:
        if not self.model.rcps and not self.model.head_config.conjoin_train:  # Ph: RC augmentation, p = 0.5
            flip = torch.rand(ids.shape[0], generator=gen) < 0.5
            ids[flip] = reverse_complement_ids(ids[flip])
        ids = ids.to(self.device, non_blocking=True)
        with loop.autocast(self.device, self.bf16):
            out = model(ids).float()
        if self.task == "classification":
            return F.cross_entropy(out, torch.as_tensor(y, dtype=torch.long, device=self.device))
        return F.mse_loss(out, torch.as_tensor(y, dtype=torch.float32, device=self.device).reshape(out.shape))

    def predict(self, data: LabelledTokens) -> np.ndarray:
        """Probabilities / standardised targets of ``data`` (eval mode, RC-invariant), (N, K)."""
        self.model.eval()
        try:
            out = sequence_outputs(self.model, data.ids, self.window, self.cfg.batch_size, self.bf16, raw=True)
        finally:
            self.model.train()
        if self.task == "classification":
            return torch.softmax(torch.from_numpy(out), -1).numpy()
        return out

    def evaluate(self, data: LabelledTokens | None) -> dict:
        if data is None or len(data) == 0:
            return {}
        pred = self.predict(data)
        if self.task == "classification":
            return classification_metrics(data.y, pred)
        return regression_metrics(data.y, pred, list(self.model.head_config.targets))

    def _after_eval(self, m: dict) -> bool:
        """Track the best model; True when early stopping says stop."""
        value = m.get(self.metric)
        if value is None:
            return False
        better = self.best_metric is None or (
            value > self.best_metric if higher_is_better(self.metric) else value < self.best_metric
        )
        if better:
            self.best_metric, self.best_step, self.bad_evals = float(value), self.step, 0
            if self.rank == 0:
                save_finetuned(self.model, self.out / "best")
            return False
        self.bad_evals += 1
        return bool(self.cfg.patience) and self.bad_evals >= self.cfg.patience

    def train(self) -> TrainOutcome:
        cfg = self.cfg
        model = self.ddp or self.model
        self.model.train()
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        params = [p for p in self.model.parameters() if p.requires_grad]
        early = False
        with loop.sigterm_guard():
            while self.step < self.total_steps and not early:
                t0 = time.perf_counter()
                lr = loop.set_lr(self.opt, self.step, self.total_steps, cfg.warmup_frac, cfg.min_lr_ratio)
                self.opt.zero_grad(set_to_none=True)
                loss_sum = 0.0
                accum = max(1, cfg.accumulate)
                for micro in range(accum):
                    idx = self._indices(self.step, micro)
                    rng = np.random.default_rng([cfg.seed, self.step, micro, self.rank, 1])
                    ids = collate([self.train_set.ids[i] for i in idx], self.window, rng)
                    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**31 - 1)))
                    sync = self.ddp is None or micro == accum - 1
                    with self.ddp.no_sync() if not sync else contextlib.nullcontext():
                        loss = self._loss(ids, self.train_set.y[idx], gen, model)
                        (loss / accum).backward()
                    loss_sum += float(loss.detach()) / accum
                gnorm = loop.clip_and_step(self.opt, params, cfg.grad_clip)
                self.step += 1
                self.wall += time.perf_counter() - t0
                record = {"step": self.step, "loss": loss_sum, "lr": lr, "grad_norm": gnorm}
                if self.step % self.eval_every == 0 or self.step == self.total_steps:
                    m = self.evaluate(self.val_set)
                    record.update({f"val_{k}": v for k, v in m.items() if not isinstance(v, dict)})
                    early = self._after_eval(m)
                    self.history.append(record)
                    if self.rank == 0:
                        self.save_checkpoint()
                if self.step % cfg.log_every == 0 or "val_n" in record or self.step == 1:
                    val = record.get(f"val_{self.metric}")
                    log.info(
                        "step %d/%d loss %.4f lr %.2e%s",
                        self.step,
                        self.total_steps,
                        loss_sum,
                        lr,
                        f" val_{self.metric} {val:.4f}" if val is not None else "",
                    )
                if loop.stop_requested(self.world, self.device):
                    log.warning("SIGTERM: checkpointing at step %d and exiting", self.step)
                    self.save_checkpoint()
                    return TrainOutcome(self.step, True, False, self.best_step, self.best_metric, self.history)
        if early:
            log.info(
                "early stopping at step %d: best val %s %.4f at step %d",
                self.step,
                self.metric,
                self.best_metric,
                self.best_step,
            )
        if self.best_metric is None and self.rank == 0:  # no validation metric: the last model is the result
            save_finetuned(self.model, self.out / "best")
            self.best_step = self.step
        if self.world > 1:
            dist.barrier()
        return TrainOutcome(self.step, False, early, self.best_step, self.best_metric, self.history)
