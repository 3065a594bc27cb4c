"""Plain-PyTorch twins of the token-major CUDA mixer kernels (``kernels/scan_cuda.py``) and of the
BiMamba that runs them (``kernels/mixer_cuda.py``).

Same functions, same token-major (n*L, channels) tensors; runs on any device. Used by the
GPU parity tests (``tests/test_gpu_scan.py``); the CPU inference path does not call them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from caduceus_cli.kernels.scan_torch import causal_conv1d_ref, selective_scan_chunked


@dataclass(frozen=True)
class MixerWeights:
    """One Mamba direction's parameters as the token-major mixer takes them (views, no copies)."""

    d_inner: int
    in_proj: torch.Tensor  # (2 d_inner, D): x rows then z rows
    conv_weight: torch.Tensor  # (d_inner, d_conv)
    conv_bias: torch.Tensor  # (d_inner,)
    x_proj: torch.Tensor  # (R + 2N, d_inner)
    dt_weight: torch.Tensor  # (d_inner, R)
    dt_bias: torch.Tensor  # (d_inner,)
    A_log: torch.Tensor  # (d_inner, N)
    D: torch.Tensor  # (d_inner,)
    out_proj: torch.Tensor  # (D, d_inner)


def _channels_first(t: torch.Tensor, length: int) -> torch.Tensor:
    """(n*L, C) -> (n, C, L)."""
    return t.view(-1, length, t.shape[-1]).transpose(1, 2)


def selective_scan_tm_ref(
    u: torch.Tensor,
    z: torch.Tensor | None,
    xdbl: torch.Tensor,
    dt_weight: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    length: int,
    reverse: bool = False,
    add: torch.Tensor | None = None,
    gate: bool = True,
) -> torch.Tensor:
    """Twin of ``scan_cuda.selective_scan_tm``: float32 maths, result in u's dtype, (n*L, d).

    ``reverse``: rows scanned backwards (flipped, scanned, flipped back); y = (C.h + D u + add) * silu(z),
    without the silu(z) factor when not ``gate``."""
    if reverse:
        u, xdbl = (_flip_rows(t, length) for t in (u, xdbl))
    rk, ns = dt_weight.shape[1], A.shape[1]
    xf = xdbl.float()
    dt_low, B, C = torch.split(xf, [rk, ns, ns], dim=-1)
    delta = dt_low @ dt_weight.float().t()  # (n*L, d), bias added inside the scan
    y = selective_scan_chunked(
        _channels_first(u.float(), length),
        _channels_first(delta, length),
        A.float(),
        _channels_first(B, length),
        _channels_first(C, length),
        D.float(),
        delta_bias=dt_bias.float(),
        delta_softplus=True,
    )  # (n, d, L)
    y = y.transpose(1, 2).reshape(u.shape)  # (n*L, d) float32
    if reverse:
        y = _flip_rows(y, length)
    if add is not None:
        y = y + add.float()
    if gate:
        y = y * torch.nn.functional.silu(z.float())
    return y.to(u.dtype)


def conv_silu_ref(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, length: int, reverse: bool = False
) -> torch.Tensor:
    """Twin of ``scan_cuda.conv_silu``: x (n*L, d) -> silu(causal conv + bias) (n*L, d) (``reverse``: of the
    rows read backwards, returned in row order)."""
    if reverse:
        return _flip_rows(conv_silu_ref(_flip_rows(x, length), weight, bias, length), length)
    u = causal_conv1d_ref(
        _channels_first(x.float(), length), weight.float().reshape(x.shape[1], -1), bias.float(), "silu"
    )
    return u.transpose(1, 2).reshape(x.shape).to(x.dtype)


def conv_silu_pair_ref(
    x: torch.Tensor, conv_f: tuple[torch.Tensor, torch.Tensor], conv_r: tuple[torch.Tensor, torch.Tensor], length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin of ``scan_cuda.conv_silu_pair``: (u_f, u_r), both (n*L, d); ``conv_*`` = (weight, bias)."""
    return conv_silu_ref(x, *conv_f, length), conv_silu_ref(x, *conv_r, length, reverse=True)


def mixer_y_ref(rows: torch.Tensor, length: int, p: MixerWeights) -> torch.Tensor:
    """One Mamba direction up to (not including) out_proj: rows (n*L, D) -> gated scan output (n*L, d_inner)."""
    dt = rows.dtype
    d = p.d_inner
    x = rows @ p.in_proj[:d].to(dt).t()
    z = rows @ p.in_proj[d:].to(dt).t()
    u = conv_silu_ref(x, p.conv_weight, p.conv_bias, length)
    xdbl = u @ p.x_proj.to(dt).t()
    return selective_scan_tm_ref(u, z, xdbl, p.dt_weight, p.dt_bias, -torch.exp(p.A_log.float()), p.D, length)


def _flip_rows(t: torch.Tensor, length: int) -> torch.Tensor:
    """(n*L, C) -> the same rows with each row's L positions reversed."""
    return t.view(-1, length, t.shape[-1]).flip(1).reshape(t.shape)


def bimamba_rows_ref(rows: torch.Tensor, length: int, pf: MixerWeights, pr: MixerWeights) -> torch.Tensor:
    """Twin of ``mixer_numba.bimamba_rows`` and ``mixer_cuda.bimamba_rows``:
    rows (n*L, D) -> out_proj(y_fwd + flip(y_rev(flip(rows)))) (n*L, D), the literal flips.
    In bf16 it rounds each gated direction before the sum (the CUDA kernel rounds the ungated y_fwd,
    then adds y_rev and gates the sum in float32, rounding once): the same function within bf16
    rounding, not bit for bit."""
    y = mixer_y_ref(rows, length, pf) + _flip_rows(mixer_y_ref(_flip_rows(rows, length), length, pr), length)
    return y @ pf.out_proj.to(rows.dtype).t()
