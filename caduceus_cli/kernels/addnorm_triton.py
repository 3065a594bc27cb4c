"""Triton kernel for the block boundary of the flip-free path (twin: ``addnorm.add_norm_pair``).

One program per (batch, position) row does, in one pass: read the previous mixer's
outputs through the flip/RC index maps (no flipped or concatenated copies), add the
residual, swap the PS halves, RMSNorm each half in float32, and write the residual and
the next mixer's input rows (or the final normed output).
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def add_norm_pair_kernel(
        h_ptr,
        of_ptr,
        or_ptr,
        res_ptr,
        res_out_ptr,
        w_ptr,
        out_ptr,
        B,
        L,
        D,
        eps,
        RCPS: tl.constexpr,
        PAIR: tl.constexpr,
        HAS_OR: tl.constexpr,
        HAS_RES: tl.constexpr,
        SWAP: tl.constexpr,
        FINAL: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)  # b * L + pos
        b = row // L
        pos = row - b * L
        pos_r = L - 1 - pos
        j = tl.arange(0, BLOCK)
        mask = j < D
        jr = D - 1 - j
        C = 2 * D if RCPS else D
        if PAIR:  # h = o_f (+ flip_L(o_r)); PS second half from the RC rows, channels reversed
            h1 = tl.load(of_ptr + (b * L + pos) * D + j, mask=mask, other=0.0).to(tl.float32)
            if HAS_OR:
                h1 += tl.load(or_ptr + (b * L + pos_r) * D + j, mask=mask, other=0.0).to(tl.float32)
            if RCPS:
                bb = B + b
                h2 = tl.load(of_ptr + (bb * L + pos_r) * D + jr, mask=mask, other=0.0).to(tl.float32)
                if HAS_OR:
                    h2 += tl.load(or_ptr + (bb * L + pos) * D + jr, mask=mask, other=0.0).to(tl.float32)
        else:
            h1 = tl.load(h_ptr + row * C + j, mask=mask, other=0.0).to(tl.float32)
            if RCPS:
                h2 = tl.load(h_ptr + row * C + D + j, mask=mask, other=0.0).to(tl.float32)
        if HAS_RES:
            h1 += tl.load(res_ptr + row * C + j, mask=mask, other=0.0).to(tl.float32)
            if RCPS:
                h2 += tl.load(res_ptr + row * C + D + j, mask=mask, other=0.0).to(tl.float32)
        rdt = res_out_ptr.dtype.element_ty
        if RCPS and SWAP:
            s1 = h2.to(rdt).to(tl.float32)
            s2 = h1.to(rdt).to(tl.float32)
        else:
            s1 = h1.to(rdt).to(tl.float32)
            if RCPS:
                s2 = h2.to(rdt).to(tl.float32)
        tl.store(res_out_ptr + row * C + j, s1.to(rdt), mask=mask)
        w = tl.load(w_ptr + j, mask=mask, other=0.0).to(tl.float32)
        n1 = s1 * tl.rsqrt(tl.sum(s1 * s1, axis=0) / D + eps) * w
        odt = out_ptr.dtype.element_ty
        if RCPS:
            tl.store(res_out_ptr + row * C + D + j, s2.to(rdt), mask=mask)
            wr = tl.load(w_ptr + jr, mask=mask, other=0.0).to(tl.float32)
            n2 = s2 * tl.rsqrt(tl.sum(s2 * s2, axis=0) / D + eps) * wr
        if FINAL:
            tl.store(out_ptr + row * C + j, n1.to(odt), mask=mask)
            if RCPS:
                tl.store(out_ptr + row * C + D + j, n2.to(odt), mask=mask)
        else:
            tl.store(out_ptr + (b * L + pos) * D + j, n1.to(odt), mask=mask)  # X[b, l]
            if RCPS:
                tl.store(out_ptr + ((B + b) * L + pos_r) * D + jr, n2.to(odt), mask=mask)  # X[B+b, L-1-l, D-1-j]

    return add_norm_pair_kernel


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
    """Same contract as ``caduceus_cli.kernels.addnorm.add_norm_pair`` (see there), except that a
    contiguous ``residual`` of the output's dtype is updated in place and returned (one fewer
    (B, L, C) buffer at the block boundary: PS 131k peak memory); callers drop the old residual."""
    import triton

    ref = h if h is not None else o_f
    D = weight.shape[0]
    C = 2 * D if rcps else D
    M = 2 * batch if rcps else batch
    res_dtype = residual.dtype if residual is not None else (torch.float32 if residual_fp32 else ref.dtype)
    if h is not None and residual is None and not residual_fp32:
        res_dtype = h.dtype
    if residual is not None and residual.dtype == res_dtype and residual.is_contiguous():
        res_out = residual.view(batch, length, C)  # in place: each program reads its row before writing it
    else:
        res_out = torch.empty(batch, length, C, device=ref.device, dtype=res_dtype)  # (B, L, C)
    out = (
        torch.empty(batch, length, C, device=ref.device, dtype=out_dtype)
        if final
        else torch.empty(M, length, D, device=ref.device, dtype=out_dtype)
    )
    dummy = res_out
    h_in = h.contiguous() if h is not None else dummy
    of = o_f.contiguous() if o_f is not None else dummy
    orr = o_r.contiguous() if o_r is not None else dummy
    res = residual.contiguous() if residual is not None else dummy
    block = triton.next_power_of_2(D)
    _kernel()[(batch * length,)](
        h_in,
        of,
        orr,
        res,
        res_out,
        weight.contiguous(),
        out,
        batch,
        length,
        D,
        eps,
        RCPS=rcps,
        PAIR=h is None,
        HAS_OR=o_r is not None,
        HAS_RES=residual is not None,
        SWAP=swap,
        FINAL=final,
        BLOCK=block,
        num_warps=4 if block >= 256 else 2,
    )
    return out, res_out
