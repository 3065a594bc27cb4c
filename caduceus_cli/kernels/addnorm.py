"""Residual add + (optional half swap) + RMSNorm of Caduceus blocks, in one function.

Tried: ``torch.compile`` of this function on the H100 (bench/results/NOTES.md): its
generated kernel was not clearly faster and recompiled per dtype, so it stays eager.
"""

from __future__ import annotations

import torch


def add_norm(
    h: torch.Tensor,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float,
    swap: bool,
    rc_pair: bool,
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


def add_norm_pair(
    h: torch.Tensor | None,
    o_f: torch.Tensor | None,
    o_r: torch.Tensor | None,
    residual: torch.Tensor | None,
    weight: torch.Tensor,
    eps: float,
    *,
    batch: int,
    length: int,
    swap: bool,
    rcps: bool,
    residual_fp32: bool,
    final: bool,
    out_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The block boundary of the flip-free path (reference twin of ``addnorm_triton.add_norm_pair``).

    Input: ``h`` (B, L, C) for the first block, else the previous BiMamba's split outputs
    ``o_f``, ``o_r`` (M*L, D) (M = 2B for PS, B for Ph), read as ``o_f + flip_L(o_r)`` (``o_f``
    alone when ``o_r`` is None: the rows kernels, ``Backend.bimamba_rows``, return both directions
    summed) and,
    for PS, re-assembled from the mixer's (forward rows, RC rows) layout into (B, L, 2D).
    Then ``add_norm``. Output: the normed (B, L, C) when ``final``, else the next mixer's
    input X (M, L, D): the PS rows [x1, RC(x2)] (Ph: x); the mixers walk them backwards for the
    reverse direction, so no flipped copy is written. Returns (output, new residual).
    """
    if h is None:
        D = o_f.shape[-1]
        m = 2 * batch if rcps else batch
        out = o_f.view(m, length, D).float()  # (M*L, D) -> (M, L, D)
        if o_r is not None:
            out = out + o_r.view(m, length, D).float().flip(1)
        h = torch.cat([out[:batch], out[batch:].flip(1, 2)], dim=-1) if rcps else out  # (B, L, C)
    normed, summed = add_norm(h.float(), residual, weight, eps, swap, rcps, residual_fp32)
    if residual is None and not residual_fp32:
        summed = summed.to(h.dtype if o_f is None else out_dtype)
    normed = normed.to(out_dtype)
    if final:
        return normed, summed
    if rcps:
        d = normed.shape[-1] // 2
        return torch.cat([normed[..., :d], normed[..., d:].flip(1, 2)], dim=0), summed  # (2B, L, D): x1, RC(x2)
    return normed, summed  # (B, L, D)
