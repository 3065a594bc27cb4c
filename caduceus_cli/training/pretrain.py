"""The pretraining loop: masked LM, gradient accumulation, DDP, checkpoints, resume, SIGTERM.

Launch on one device directly, or under ``torchrun`` (one process per GPU, or CPU
processes with gloo). Rank 0 writes checkpoints and metrics; every rank draws its
own deterministic data (``ChunkSampler``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from caduceus_cli.choices import Precision, choice
from caduceus_cli.errors import TrainingError
from caduceus_cli.io.coords import read_bed
from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.config import CaduceusConfig
from caduceus_cli.model.loading import load_model, save_model
from caduceus_cli.tokenizer import reverse_complement_ids
from caduceus_cli.training.data import ChunkSampler, read_fasta_tokens, tile_chunks
from caduceus_cli.training.loop import StopFlag as _Stop  # shared with fine-tuning: one SIGTERM flag
from caduceus_cli.training.loop import dist_env as _dist_env
from caduceus_cli.training.loop import latest_checkpoint, pick_train_device, write_state
from caduceus_cli.training.loop import on_sigterm as _on_sigterm
from caduceus_cli.training.masking import IGNORE, mask_tokens
from caduceus_cli.training.optim import param_groups, warmup_cosine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    fasta: tuple[str, ...]
    out_dir: str
    seq_len: int = 1024
    d_model: int = 128
    n_layer: int = 4
    rcps: bool = True
    steps: int = 1000
    batch_size: int = 32  # sequences per micro-batch per rank
    tokens_per_step: int = 0  # 0: one micro-batch per rank per step
    lr: float = 8e-3
    min_lr: float = 1e-4
    warmup_frac: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    bed: str | None = None
    val_fasta: tuple[str, ...] = ()
    val_contigs: tuple[str, ...] = ()
    train_contigs: tuple[str, ...] = ()
    max_n_frac: float = 0.5
    eval_every: int = 200
    eval_chunks: int = 256
    save_every: int = 500
    log_every: int = 10
    device: str = "auto"
    backend: str = "auto"
    precision: Precision | str = Precision.AUTO
    resume: bool = False
    time_budget_s: float = 0.0  # >0: after 10 steps, shorten `steps` to fit this wall time
    command: str = ""
    extra: dict = field(default_factory=dict)


class Trainer:
    def __init__(self, cfg: PretrainConfig) -> None:
        self.cfg = cfg
        self.rank, self.world, local = _dist_env()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        self.device = pick_train_device(cfg.device, local)  # 'cuda' alone: this rank's GPU
        precision = choice(Precision, cfg.precision, "--precision")
        self.bf16 = precision == Precision.BF16 or (precision == Precision.AUTO and self.device.type == "cuda")
        self.out = Path(cfg.out_dir)
        micro_tokens = cfg.batch_size * cfg.seq_len * self.world
        self.accum = max(1, -(-cfg.tokens_per_step // micro_tokens)) if cfg.tokens_per_step else 1
        train_contigs = set(cfg.train_contigs) or None
        tokens = read_fasta_tokens(list(cfg.fasta), train_contigs)
        val_tokens = {}
        for name in cfg.val_contigs:
            if name in tokens:
                val_tokens[name] = tokens.pop(name)
        if cfg.val_fasta:
            val_tokens.update(read_fasta_tokens(list(cfg.val_fasta)))
        self.train_tokens = tokens
        self.sampler = ChunkSampler.build(
            tokens, cfg.seq_len, read_bed(cfg.bed) if cfg.bed else None, cfg.max_n_frac, cfg.seed
        )
        self.val = tile_chunks(val_tokens, cfg.seq_len, cfg.max_n_frac, cfg.eval_chunks) if val_tokens else None
        mcfg = CaduceusConfig(d_model=cfg.d_model, n_layer=cfg.n_layer, rcps=cfg.rcps, max_seq_len=cfg.seq_len)
        torch.manual_seed(cfg.seed)
        self.model = CaduceusForMaskedLM(mcfg, backend=cfg.backend).to(self.device)
        self.opt = torch.optim.AdamW(
            param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, fused=self.device.type == "cuda"
        )
        self.step = 0
        self.total_steps = cfg.steps
        self.tokens_seen = 0
        self.wall = 0.0
        if cfg.resume:
            self._resume()
        self.ddp = (
            torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.world > 1
            else None
        )

    # ---- checkpoints ----
    def _resume(self) -> None:
        ck = latest_checkpoint(self.out)
        if ck is None:
            log.warning("--resume: no checkpoint under %s; starting from scratch", self.out)
            return
        state = torch.load(ck / "training_state.pt", map_location="cpu", weights_only=False)
        if state["config"]["seq_len"] != self.cfg.seq_len or state["config"]["d_model"] != self.cfg.d_model:
            raise TrainingError(f"{ck}: checkpoint was made with a different model/sequence length; use another --out")
        loaded = load_model(ck, device=self.device, backend=self.cfg.backend)
        self.model.load_state_dict(loaded.state_dict())
        self.model.tie_weights()
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.tokens_seen, self.wall = state["step"], state["tokens_seen"], state["wall_s"]
        self.total_steps = state.get("total_steps", self.cfg.steps)
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed from %s at step %d", ck, self.step)

    def save_checkpoint(self) -> Path | None:
        if self.rank != 0:
            return None
        ck = self.out / "checkpoints" / f"step-{self.step:07d}"
        save_model(self.model, ck)
        write_state(
            ck,
            {
                "optimizer": self.opt.state_dict(),
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "wall_s": self.wall,
                "total_steps": self.total_steps,
                "torch_rng": torch.get_rng_state(),
                "config": asdict(self.cfg),
            },
        )
        log.info("checkpoint %s", ck)
        return ck

    # ---- steps ----
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def _loss(self, ids: torch.Tensor, gen: torch.Generator, rc_aug: bool, model) -> tuple[torch.Tensor, int, int]:
        inputs, labels = mask_tokens(ids, gen)
        if rc_aug:  # Ph: reverse-complement augmentation with p = 0.5 per sequence
            flip = torch.rand(ids.shape[0], generator=gen) < 0.5
            inputs[flip] = reverse_complement_ids(inputs[flip])
            labels[flip] = torch.where(
                labels[flip] == IGNORE, labels[flip], reverse_complement_ids(labels[flip].clamp(min=0))
            )
        inputs, labels = inputs.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        with self._autocast():
            logits = model(inputs).logits
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=IGNORE)
        mask = labels != IGNORE
        correct = int((logits.argmax(-1)[mask] == labels[mask]).sum()) if mask.any() else 0
        return loss, correct, int(mask.sum())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val is None or len(self.val) == 0:
            return {}
        self.model.eval()
        gen = torch.Generator().manual_seed(12345)
        tot_loss, tot_correct, tot_n = 0.0, 0, 0
        for i in range(0, len(self.val), self.cfg.batch_size):
            ids = torch.from_numpy(self.val[i : i + self.cfg.batch_size])
            loss, correct, n = self._loss(ids, gen, False, self.model)
            tot_loss += float(loss) * n
            tot_correct += correct
            tot_n += n
        self.model.train()
        ce = tot_loss / max(1, tot_n)
        return {
            "val_loss": ce,
            "val_acc": tot_correct / max(1, tot_n),
            "val_ppl": float(np.exp(ce)),
            "val_tokens": tot_n,
        }

    def train(self) -> dict:
        cfg = self.cfg
        model = self.ddp or self.model
        self.model.train()
        old = signal.signal(signal.SIGTERM, _on_sigterm)
        metrics_path = self.out / "metrics.jsonl"
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        last = {}
        try:
            while self.step < self.total_steps:
                t0 = time.perf_counter()
                lr = warmup_cosine(self.step, self.total_steps, cfg.warmup_frac, cfg.lr, cfg.min_lr)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                self.opt.zero_grad(set_to_none=True)
                loss_sum, correct, n_tok = 0.0, 0, 0
                for micro in range(self.accum):
                    ids = torch.from_numpy(self.sampler.batch(cfg.batch_size, self.step, micro, self.rank))
                    gen = torch.Generator().manual_seed(hash((cfg.seed, self.step, micro, self.rank)) & 0x7FFFFFFF)
                    sync = self.ddp is None or micro == self.accum - 1
                    with contextlib.nullcontext() if sync else self.ddp.no_sync():
                        loss, c, n = self._loss(ids, gen, not self.model.config.rcps, model)
                        (loss / self.accum).backward()
                    loss_sum += float(loss.detach()) / self.accum
                    correct += c
                    n_tok += n
                gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.opt.step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                self.wall += dt
                step_tokens = cfg.batch_size * cfg.seq_len * self.accum * self.world
                self.tokens_seen += step_tokens
                self.step += 1
                last = {
                    "step": self.step,
                    "loss": loss_sum,
                    "acc": correct / max(1, n_tok),
                    "lr": lr,
                    "grad_norm": float(gnorm),
                    "tokens_per_s": step_tokens / dt,
                    "tokens": self.tokens_seen,
                }
                if cfg.time_budget_s and self.step == 10:
                    per_step = self.wall / 10
                    self.total_steps = max(11, min(cfg.steps, int(cfg.time_budget_s / per_step)))
                    log.info(
                        "time budget %.0f s at %.3f s/step: training %d steps",
                        cfg.time_budget_s,
                        per_step,
                        self.total_steps,
                    )
                if self.step % cfg.eval_every == 0 or self.step == self.total_steps:
                    last.update(self.evaluate())
                if self.rank == 0 and (self.step % cfg.log_every == 0 or "val_loss" in last or self.step == 1):
                    with open(metrics_path, "a") as fh:
                        fh.write(json.dumps(last) + "\n")
                    log.info(
                        "step %d loss %.4f acc %.3f lr %.2e %.0f tok/s%s",
                        self.step,
                        last["loss"],
                        last["acc"],
                        lr,
                        last["tokens_per_s"],
                        f" val_loss {last['val_loss']:.4f}" if "val_loss" in last else "",
                    )
                if self.step % cfg.save_every == 0 and self.step < self.total_steps:
                    self.save_checkpoint()
                if _Stop.requested:
                    log.warning("SIGTERM: checkpointing at step %d and exiting", self.step)
                    self.save_checkpoint()
                    return {"stopped": True, **last}
            self.save_checkpoint()
            if self.rank == 0:
                save_model(self.model, self.out / "model")
                summary = {
                    "steps": self.step,
                    "tokens": self.tokens_seen,
                    "wall_s": self.wall,
                    "world_size": self.world,
                    "device": torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu",
                    "final": last,
                    "config": asdict(cfg),
                }
                (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
            return last
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)


@dataclass(frozen=True)
class PretrainResult:
    """Where a pretraining run stopped: its last metrics, and the model folder when it finished."""

    step: int
    loss: float
    val_loss: float | None
    stopped: bool  # SIGTERM: checkpointed before the last step; --resume continues
    model_dir: str | None
    metrics: dict


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Run (or resume) pretraining; returns the last metrics."""
    last = Trainer(cfg).train()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    stopped = bool(last.get("stopped"))
    model_dir = None if stopped else str(Path(cfg.out_dir) / "model")
    return PretrainResult(
        int(last.get("step", 0)), float(last.get("loss", float("nan"))), last.get("val_loss"), stopped, model_dir, last
    )
