"""Pieces of a training loop shared by pretraining and fine-tuning.

- ``dist_env`` / ``init_distributed`` / ``pick_train_device``: one process per device under ``torchrun``.
- ``adamw``: AdamW over parameter groups, each with its own ``base_lr`` (head vs backbone).
- ``set_lr``: warm-up + cosine for every group, scaled from its own ``base_lr``.
- ``autocast``: bf16 autocast on request (``bf16_for`` decides 'auto' as on GPU only).
- ``clip_and_step``: gradient clipping + optimiser step.
- ``StopFlag`` / ``sigterm_guard``: SIGTERM asks the loop to finish its step, checkpoint and return.
- ``latest_checkpoint`` / ``write_state`` / ``read_state``: ``checkpoints/step-NNNNNNN/`` folders.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from caduceus_cli.choices import Precision, choice
from caduceus_cli.errors import OptionError
from caduceus_cli.training.optim import warmup_cosine

log = logging.getLogger(__name__)


class StopFlag:
    """Set by the SIGTERM handler (HPC preemption); the loop checkpoints after its current step."""

    requested = False


def on_sigterm(signum, frame) -> None:
    StopFlag.requested = True


@contextlib.contextmanager
def sigterm_guard() -> Iterator[None]:
    """Install the SIGTERM handler for the duration of a loop (main thread only), then restore."""
    try:
        old = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread: no handler
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def stop_requested(world: int, device: torch.device) -> bool:
    """The stop flag, agreed by every rank (any rank stopping stops all)."""
    if world <= 1 or not dist.is_initialized():
        return StopFlag.requested
    flag = torch.tensor([1.0 if StopFlag.requested else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_train_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise OptionError(f"--device {device}: expected auto, cpu, cuda or cuda:N") from exc
        if dev.type == "cuda" and dev.index is None:  # 'cuda': this rank's GPU
            dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def init_distributed(world: int, device: str) -> None:
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")


def bf16_for(precision: Precision | str, device: torch.device) -> bool:
    p = choice(Precision, precision, "--precision")
    return p == Precision.BF16 or (p == Precision.AUTO and device.type == "cuda")


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def adamw(groups: list[dict], betas: tuple[float, float], device: torch.device, eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over ``groups`` (each with ``params``, ``base_lr``, ``weight_decay``); empty groups dropped."""
    groups = [dict(g, lr=g["base_lr"]) for g in groups if g["params"]]
    return torch.optim.AdamW(groups, betas=betas, eps=eps, fused=device.type == "cuda")


def set_lr(opt: torch.optim.Optimizer, step: int, total: int, warmup_frac: float, min_lr_ratio: float) -> float:
    """Warm-up + cosine per group from its ``base_lr`` down to ``base_lr * min_lr_ratio``; returns group 0's lr."""
    for g in opt.param_groups:
        base = g["base_lr"]
        g["lr"] = warmup_cosine(step, total, warmup_frac, base, base * min_lr_ratio)
    return opt.param_groups[0]["lr"]


def clip_and_step(opt: torch.optim.Optimizer, params, max_norm: float) -> float:
    """Clip the gradient norm (0: no clipping, norm still reported) and step; returns the norm before clipping."""
    params = [p for p in params if p.grad is not None]
    gnorm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    opt.step()
    return float(gnorm)


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest ``checkpoints/step-*`` folder with a complete training state, or None."""
    ckpts = sorted(Path(out_dir).glob("checkpoints/step-*"), key=lambda p: int(p.name.split("-")[1]))
    ckpts = [c for c in ckpts if (c / "training_state.pt").exists()]
    return ckpts[-1] if ckpts else None


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"step-{step:07d}"


def write_state(folder: Path, state: dict) -> None:
    """``training_state.pt`` written last and renamed into place: its presence marks a complete checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "training_state.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(folder / "training_state.pt")


def read_state(folder: Path) -> dict:
    return torch.load(folder / "training_state.pt", map_location="cpu", weights_only=False)
