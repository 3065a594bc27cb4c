"""Selective scan of Mamba-1 in pure PyTorch.

Both functions share mamba-ssm's ``selective_scan_fn`` signature and maths:

    delta = softplus(delta + delta_bias)              (if delta_softplus)
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t   = <h_t, C_t> + D * u_t ;  y_t *= silu(z_t)  (if z is given)

Shapes: u, delta, z: (b, d, L); A: (d, n); B, C: (b, n, L) or grouped (b, g, n, L)
where channel c uses group c // (d / g); D, delta_bias: (d,).

``selective_scan_ref`` is the plain reference twin (one step per position);
``selective_scan_chunked`` is the fast CPU path: the sequence is cut into chunks
of T positions, every chunk is scanned in parallel from a zero state (T steps,
vectorised over chunks), the chunk-end states are carried across chunks
(L / T steps), and each chunk is corrected with the cumulative decay. Products of
decays lie in (0, 1], so nothing overflows (no log-space division).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# elements (b * d * L * n) materialised per segment of the chunked scan (~4 of them live)
_SEGMENT_BUDGET = 1 << 23
_SEGMENT_BUDGET_GPU = 1 << 26


def _prepare(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Float32 views in grouped layout: u, delta (b, g, dg, L); A (g, dg, n); B, C (b, g, n, L)."""
    b, d, L = u.shape
    if B.dim() == 3:
        B = B.unsqueeze(1)  # (b, n, L) -> (b, 1, n, L)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    g = B.shape[1]
    if d % g:
        raise ValueError(f"d_inner {d} is not divisible by {g} groups")
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    dg = d // g
    u = u.float().reshape(b, g, dg, L)  # (b, d, L) -> (b, g, dg, L)
    delta = delta.reshape(b, g, dg, L)
    A = A.float().reshape(g, dg, -1)  # (d, n) -> (g, dg, n)
    return u, delta, A, B.float(), C.float(), g


def _finish(
    y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """y (b, d, L) float32 -> + D*u, gated by silu(z), cast back to the input dtype."""
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Reference selective scan: one Python step per position (slow, obviously right)."""
    dtype = u.dtype
    b, d, L = u.shape
    uf, dt, Af, Bf, Cf, g = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    n = Af.shape[-1]
    h = uf.new_zeros(b, g, d // g, n)  # state (b, g, dg, n)
    ys = []
    for t in range(L):
        dA = torch.exp(dt[..., t, None] * Af)  # (b, g, dg, n)
        dBu = (dt[..., t] * uf[..., t])[..., None] * Bf[:, :, None, :, t]
        h = dA * h + dBu
        ys.append(torch.einsum("bgdn,bgn->bgd", h, Cf[..., t]))
    y = torch.stack(ys, dim=-1).reshape(b, d, L)  # (b, g, dg, L) -> (b, d, L)
    return _finish(y, uf.reshape(b, d, L), D, z, dtype)


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk: int = 32,
) -> torch.Tensor:
    """Chunked selective scan: the same function as ``selective_scan_ref``, fast on CPU."""
    dtype = u.dtype
    b, d, L = u.shape
    uf, dt, Af, Bf, Cf, g = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    dg, n = d // g, Af.shape[-1]
    T = chunk
    budget = _SEGMENT_BUDGET_GPU if u.is_cuda else _SEGMENT_BUDGET
    seg = max(T, (budget // max(1, b * d * n)) // T * T)
    ys = []
    h = uf.new_zeros(b, g, dg, n)  # state carried across segments
    for s in range(0, L, seg):
        e = min(L, s + seg)
        Ls = e - s
        nc = -(-Ls // T)
        pad = nc * T - Ls
        dt_s, u_s, B_s, C_s = dt[..., s:e], uf[..., s:e], Bf[..., s:e], Cf[..., s:e]
        if pad:  # delta = 0 on padding: decay 1, input 0, state unchanged
            dt_s, u_s = F.pad(dt_s, (0, pad)), F.pad(u_s, (0, pad))
            B_s, C_s = F.pad(B_s, (0, pad)), F.pad(C_s, (0, pad))
        # (b, g, dg, Lp) -> (b, g, dg, nc, T, 1) against A (g, dg, n) -> (b, g, dg, nc, T, n)
        dt6 = dt_s.reshape(b, g, dg, nc, T, 1)
        dA = torch.exp(dt6 * Af[None, :, :, None, None, :])
        # B: (b, g, n, Lp) -> (b, g, 1, nc, T, n)
        B6 = B_s.reshape(b, g, n, nc, T).permute(0, 1, 3, 4, 2).unsqueeze(2)
        dBu = (dt6 * u_s.reshape(b, g, dg, nc, T, 1)) * B6  # delta * u * B
        local = [dBu[..., 0, :]]
        for t in range(1, T):  # local scan from a zero state, vectorised over chunks (out of place: autograd)
            local.append(dA[..., t, :] * local[-1] + dBu[..., t, :])
        states = torch.stack(local, dim=-2)  # (b, g, dg, nc, T, n)
        decay = torch.cumprod(dA, dim=-2)  # prod of dA within the chunk up to t
        starts = []
        for c in range(nc):  # carry chunk-end states across chunks
            starts.append(h)
            h = decay[..., c, -1, :] * h + states[..., c, -1, :]
        states = states + decay * torch.stack(starts, dim=-2).unsqueeze(-2)  # (b, g, dg, nc, 1, n)
        C6 = C_s.reshape(b, g, n, nc, T).permute(0, 1, 3, 4, 2).unsqueeze(2)  # (b, g, 1, nc, T, n)
        y_s = (states * C6).sum(-1).reshape(b, g, dg, nc * T)  # (b, g, dg, nc, T) -> (b, g, dg, Lp)
        ys.append(y_s[..., :Ls])
    y = torch.cat(ys, dim=-1)  # (b, g, dg, L)
    return _finish(y.reshape(b, d, L), uf.reshape(b, d, L), D, z, dtype)


def causal_conv1d_ref(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, activation: str | None = None
) -> torch.Tensor:
    """Depthwise causal conv of x (b, d, L) with weight (d, w), as causal-conv1d's ``causal_conv1d_fn``."""
    d, w = weight.shape
    L = x.shape[-1]
    out = F.conv1d(
        x, weight.unsqueeze(1).to(x.dtype), None if bias is None else bias.to(x.dtype), padding=w - 1, groups=d
    )
    out = out[..., :L]
    if activation in ("silu", "swish"):
        out = F.silu(out)
    return out
