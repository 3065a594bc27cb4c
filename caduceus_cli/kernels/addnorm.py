"""Residual add + (optional half swap) + RMSNorm of Caduceus blocks.

``add_norm_ref`` is the eager reference twin; on CUDA ``add_norm`` is the same
function through ``torch.compile`` (one fused kernel instead of ~8 passes over a
(B, L, H) tensor), falling back to eager, logged once, if compilation fails.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def add_norm_ref(
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


_compiled = None
_failed = False


def add_norm(h, residual, weight, eps, swap, rc_pair, residual_fp32):
    """``add_norm_ref``, compiled on CUDA (set CADUCEUS_NO_COMPILE=1 to stay eager)."""
    global _compiled, _failed
    if h.device.type != "cuda" or _failed or os.environ.get("CADUCEUS_NO_COMPILE") or torch.is_grad_enabled():
        return add_norm_ref(h, residual, weight, eps, swap, rc_pair, residual_fp32)
    if _compiled is None:
        _compiled = torch.compile(add_norm_ref, dynamic=True)
    try:
        return _compiled(h, residual, weight, eps, swap, rc_pair, residual_fp32)
    except Exception as exc:  # a broken toolchain must not break inference
        _failed = True
        log.warning("torch.compile of add+norm failed (%s); using the eager path", type(exc).__name__)
        return add_norm_ref(h, residual, weight, eps, swap, rc_pair, residual_fp32)
