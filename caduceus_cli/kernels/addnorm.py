"""Residual add + (optional half swap) + RMSNorm of Caduceus blocks, in one function.

Tried: ``torch.compile`` of this function on the H100 (bench/results/NOTES.md): its
generated kernel was not clearly faster and recompiled per dtype, so it stays eager.
"""

from __future__ import annotations

import torch


def add_norm(
    h: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float, swap: bool, rc_pair: bool,
    residual_fp32: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(normed, new_residual). ``residual = h + residual`` (halves swapped if ``swap``), then RMSNorm;
    with ``rc_pair`` the second half is normed inside an RC sandwich (weight flipped)."""
    summed = h if residual is None else (h + residual).to(residual.dtype)
    if swap:
        d = summed.shape[-1] // 2
        summed = torch.cat([summed[..., d:], summed[..., :d]], dim=-1)
    if residual_fp32:
        summed = summed.float()
    xf = summed.float()
    if rc_pair:
        d = xf.shape[-1] // 2
        xf = xf.unflatten(-1, (2, d))  # (B, L, 2D) -> (B, L, 2, D)
        w = torch.stack([weight, weight.flip(0)]).float()  # (2, D)
        normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w).flatten(-2)
    else:
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return normed.to(h.dtype), summed
