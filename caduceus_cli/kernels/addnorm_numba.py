"""The flip-free block boundary on the CPU: one numba pass per block instead of ~15 PyTorch ops.

Same function and signature as ``addnorm.add_norm_pair`` (its reference twin, which is also the
twin of the GPU's Triton kernel): reads the previous BiMamba's outputs through index maps (flip
along L, the PS RC rows with channels reversed), adds the residual, swaps the PS halves, RMS-norms
each half and writes the next mixer's input X (M, L, D), or the final normed (B, L, C). Work
items are blocks of tokens over ``prange`` (a thin driver around the sequential
``_boundary_tokens``, see ``mixer_numba``); every value is computed by one thread in a
fixed order (sums of squares in 16 lanes, then the lanes in order), so results do not depend on the
thread count, nor on whether numba compiled or loaded the kernel.

Where the fast path does not apply (not CPU float32 inference) the call goes to the twin.
"""

from __future__ import annotations

import numpy as np
import torch

from caduceus_cli.kernels import addnorm
from caduceus_cli.kernels.cpu_buffers import as_numpy, fresh
from caduceus_cli.kernels.vmath_numba import FASTMATH, fma, nb, prefer_512_bit_vectors

TOKENS_PER_ITEM = 64
_LANES = 16

if nb is not None:

    @nb.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def _rms_scale(x, lo, hi, eps, part):  # pragma: no cover - compiled
        """1 / sqrt(mean(x[lo:hi]**2) + eps): squares summed in 16 lanes, then the lanes in order.

        ``part``: a float32 scratch of _LANES, the caller's (no allocation per token)."""
        for j in range(_LANES):
            part[j] = np.float32(0.0)
        c = lo
        while c + _LANES <= hi:
            for j in range(_LANES):
                part[j] = fma(x[c + j], x[c + j], part[j])
            c += _LANES
        tail = np.float32(0.0)
        while c < hi:
            tail = fma(x[c], x[c], tail)
            c += 1
        s = np.float32(0.0)
        for j in range(_LANES):
            s += part[j]
        s += tail
        return np.float32(1.0) / np.sqrt(s / np.float32(hi - lo) + eps)

    @nb.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def _boundary_tokens(
        mode,
        h,
        o_f,
        o_r,
        residual,
        has_res,
        weight,
        eps,
        batch,
        length,
        swap,
        rcps,
        final,
        res_out,
        X,
        normed_out,
        lo,
        hi,
    ):  # pragma: no cover - compiled
        """Tokens [lo, hi) (token = b * L + t) of the block boundary.

        mode 0: h (B, L, C) is the block input; 1: o_f (M*L, D) holds both directions (o_r unused);
        2: o_f + flip_L(o_r). residual, res_out (B, L, C); weight (D,); X (M, L, D) out unless
        ``final``, else normed_out (B, L, C).
        """
        prefer_512_bit_vectors()
        D = weight.shape[0]
        C = 2 * D if rcps else D
        x = np.empty(C, np.float32)
        tmp = np.empty(C, np.float32)
        part = np.empty(_LANES, np.float32)  # _rms_scale's lanes
        for tok in range(lo, hi):
            b = tok // length
            t = tok % length
            if mode == 0:
                hr = h[b, t]
                for c in range(C):
                    x[c] = hr[c]
            else:  # forward stream row b; PS: RC stream row B + b at position L-1-t, channels reversed
                src = o_f[b * length + t]
                for c in range(D):
                    x[c] = src[c]
                if mode == 2:
                    srr = o_r[b * length + length - 1 - t]
                    for c in range(D):
                        x[c] += srr[c]
                if rcps:
                    m = batch + b
                    src = o_f[m * length + length - 1 - t]
                    for c in range(D):
                        x[D + c] = src[D - 1 - c]
                    if mode == 2:
                        srr = o_r[m * length + t]
                        for c in range(D):
                            x[D + c] += srr[D - 1 - c]
            if has_res:
                r = residual[b, t]
                for c in range(C):
                    x[c] += r[c]
            if swap:  # halves swapped: the residual stream keeps the swapped order
                for c in range(C):
                    tmp[c] = x[c]
                for c in range(D):
                    x[c] = tmp[D + c]
                    x[D + c] = tmp[c]
            ro = res_out[b, t]
            for c in range(C):
                ro[c] = x[c]
            if rcps:  # each half normed on its own; the second with the weight reversed
                s0 = _rms_scale(x, 0, D, eps, part)
                s1 = _rms_scale(x, D, C, eps, part)
                for c in range(D):
                    tmp[c] = x[c] * s0 * weight[c]
                    tmp[D + c] = x[D + c] * s1 * weight[D - 1 - c]
            else:
                s0 = _rms_scale(x, 0, C, eps, part)
                for c in range(C):
                    tmp[c] = x[c] * s0 * weight[c]
            if final:
                no = normed_out[b, t]
                for c in range(C):
                    no[c] = tmp[c]
                continue
            # X: rows (PS: x1 rows, then RC(x2) rows)
            x0 = X[b, t]
            for c in range(D):
                x0[c] = tmp[c]
            if rcps:
                x0 = X[batch + b, length - 1 - t]
                for c in range(D):
                    x0[c] = tmp[C - 1 - c]


if nb is not None:

    @nb.njit(parallel=True, cache=True)
    def _boundary_kernel(
        mode, h, o_f, o_r, residual, has_res, weight, eps, batch, length, swap, rcps, final, res_out, X, normed_out
    ):  # pragma: no cover - compiled
        """All B * L tokens, in items of TOKENS_PER_ITEM over ``prange``; see ``_boundary_tokens``."""
        ntok = batch * length
        for item in nb.prange((ntok + TOKENS_PER_ITEM - 1) // TOKENS_PER_ITEM):
            lo = item * TOKENS_PER_ITEM
            hi = min(ntok, lo + TOKENS_PER_ITEM)
            _boundary_tokens(
                mode,
                h,
                o_f,
                o_r,
                residual,
                has_res,
                weight,
                eps,
                batch,
                length,
                swap,
                rcps,
                final,
                res_out,
                X,
                normed_out,
                lo,
                hi,
            )


def _fast(tensors: tuple[torch.Tensor | None, ...], out_dtype: torch.dtype) -> bool:
    if nb is None or out_dtype != torch.float32 or torch.is_grad_enabled():
        return False
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors)


def add_norm_pair_cpu(
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
    """``addnorm.add_norm_pair`` in one numba pass for CPU float32 inference (else the twin itself).

    ``o_r`` may be None when ``o_f`` already holds both directions' sum (``BiMamba.forward_split``
    through ``Backend.bimamba_rows``); the twin accepts the same.
    """
    kw = dict(
        batch=batch,
        length=length,
        swap=swap,
        rcps=rcps,
        residual_fp32=residual_fp32,
        final=final,
        out_dtype=out_dtype,
    )
    if not _fast((h, o_f, o_r, residual, weight), out_dtype):
        return addnorm.add_norm_pair(h, o_f, o_r, residual, weight, eps, **kw)
    D = weight.shape[0]
    C = 2 * D if rcps else D
    M = 2 * batch if rcps else batch
    mode = 0 if h is not None else (1 if o_r is None else 2)
    dummy2 = np.zeros((1, 1), np.float32)
    dummy3 = np.zeros((1, 1, 1), np.float32)
    hn = h.contiguous().numpy() if h is not None else dummy3
    ofn = o_f.contiguous().numpy() if o_f is not None else dummy2
    orn = o_r.contiguous().numpy() if o_r is not None else dummy2
    resn = residual.contiguous().numpy() if residual is not None else dummy3
    res_out = fresh((batch, length, C))  # (B, L, C)
    if final:
        normed = fresh((batch, length, C))
        X = torch.empty(1, 1, D)
    else:
        normed = torch.empty(1, 1, C)
        X = fresh((M, length, D))
    _boundary_kernel(
        mode,
        hn,
        ofn,
        orn,
        resn,
        residual is not None,
        as_numpy(weight),
        np.float32(eps),
        batch,
        length,
        swap,
        rcps,
        final,
        res_out.numpy(),
        X.numpy(),
        normed.numpy(),
    )
    return (normed if final else X), res_out
