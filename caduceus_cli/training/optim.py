"""AdamW parameter groups and the warm-up + cosine schedule of the recipe."""

from __future__ import annotations

import math

import torch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No decay on biases, norms, embeddings, A_log and D (ties counted once)."""
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim < 2 or "embedding" in name or name.endswith(("A_log", ".D")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, total: int, warmup_frac: float, lr: float, min_lr: float) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up over warmup_frac * total, cosine to min_lr."""
    warm = max(1, int(round(warmup_frac * total)))
    if step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))
