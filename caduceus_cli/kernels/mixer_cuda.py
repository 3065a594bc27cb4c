"""Both directions of a BiMamba on CUDA, token-major: the ``Backend.bimamba_rows`` of the cuda backend.

Twin: ``mixer_ref.bimamba_rows_ref``; same contract as the CPU ``mixer_numba.bimamba_rows``. One call
runs, on rows (n*L, D):

    x | z = rows @ W_in^T                       cuBLAS, once for both directions (in_proj is tied)
    u_f, u_r = silu(conv(x) + b)                ``scan_cuda.conv_silu_pair``: both from one read of x
    xdbl_f, xdbl_r = u_* @ W_xproj_*^T          cuBLAS, one per direction
    y_f = scan(u_f, xdbl_f)                     ``scan_cuda.scan_prepared``, ungated, over u_f
    y = (y_f + scan_rev(u_r, xdbl_r)) * silu(z) the reverse walk adds y_f and gates the sum, over y_f
    out = y @ W_out^T                           cuBLAS, once (out_proj is tied and linear)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from caduceus_cli.kernels.mixer_ref import MixerWeights
from caduceus_cli.kernels.row_groups import in_row_groups
from caduceus_cli.kernels.scan_cuda import (
    ConvParams,
    ScanWeights,
    cdiv,
    conv_pair_prepared,
    conv_params,
    device_index,
    nvrtc_module,
    scan_prepared,
    supports,
)


def rows_supported(d_inner: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``bimamba_rows`` runs this case (``Backend.bimamba_rows_supports``)."""
    return device.type == "cuda" and supports(d_inner, dtype)


# The weights as bimamba_rows reads them, from float32 contiguous parameters, in one launch (instead of
# a dozen tiny ones per call): the projections cast to the rows' type (in_proj, x_proj_f, x_proj_r,
# out_proj in ``cast``, each from a PAD-element boundary), A2 = -exp(A_log) * log2(e) of both
# directions (``a2``, float; exp as torch.exp) and both conv weights transposed to (DC, d) (``cwt``, float).
# Sizes are int: the loader passes Python ints as 32-bit C ints.
_PREP_SOURCE = r"""
__device__ __forceinline__ long long padded(long long n) { return (n + PAD - 1) / PAD * PAD; }  // PAD: PREP_PAD
extern "C" __global__ void prep_rows_weights(
    const float* __restrict__ w0, const float* __restrict__ w1, const float* __restrict__ w2,
    const float* __restrict__ w3, st_t* __restrict__ cast, int n0, int n1, int n2, int n3,
    const float* __restrict__ alf, const float* __restrict__ alr, float* __restrict__ a2, int na,
    const float* __restrict__ cwf, const float* __restrict__ cwr, float* __restrict__ cwt, int d, int dc) {
    const long long o1 = padded(n0), o2 = o1 + padded(n1), o3 = o2 + padded(n2), e3 = o3 + padded(n3);
    const long long e4 = e3 + 2LL * na, total = e4 + 2LL * d * dc;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        if (i < o1) { if (i < n0) cast[i] = fromf(w0[i]); }
        else if (i < o2) { if (i - o1 < n1) cast[i] = fromf(w1[i - o1]); }
        else if (i < o3) { if (i - o2 < n2) cast[i] = fromf(w2[i - o2]); }
        else if (i < e3) { if (i - o3 < n3) cast[i] = fromf(w3[i - o3]); }
        else if (i < e4) {
            const long long j = i - e3;
            a2[j] = -expf(j < na ? alf[j] : alr[j - na]) * LOG2E_F;
        } else {                                      // cwt[dir][k][c] = cw_dir[c][k]
            const long long j = i - e4;
            const int dir = (int)(j / ((long long)d * dc)), r = (int)(j % ((long long)d * dc));
            const int k = r / d, c = r % d;
            cwt[j] = (dir ? cwr : cwf)[c * dc + k];
        }
    }
}
"""
PREP_PAD = 8  # PAD in the source: each cast projection starts on a 16-byte boundary


@dataclass(frozen=True)
class RowsWeights:
    """A BiMamba's weights as ``bimamba_rows`` uses them, derived once per call and shared by its row
    groups; nothing derived outlives the call. ``of``: one kernel launch from float32 parameters (others
    are converted to float32 first); twin: ``of_torch``, the same tensors from torch ops."""

    in_proj: torch.Tensor  # (2 d, D), the rows' dtype (tied: the forward direction's)
    conv_f: ConvParams
    conv_r: ConvParams
    x_proj_f: torch.Tensor  # (R + 2N, d), the rows' dtype
    x_proj_r: torch.Tensor
    scan_f: ScanWeights
    scan_r: ScanWeights
    out_proj: torch.Tensor  # (D, d), the rows' dtype (tied)

    @staticmethod
    def of(pf: MixerWeights, pr: MixerWeights, dtype: torch.dtype) -> RowsWeights:
        f = lambda t: t.float().contiguous()  # noqa: E731  (no copy for float32 parameters)
        projections = [f(pf.in_proj), f(pf.x_proj), f(pr.x_proj), f(pf.out_proj)]
        a_log = [f(pf.A_log), f(pr.A_log)]
        conv = [f(pf.conv_weight).reshape(pf.d_inner, -1), f(pr.conv_weight).reshape(pr.d_inner, -1)]  # (d, DC)
        d, dc = conv[0].shape
        assert conv[1].shape == (d, dc) and a_log[0].shape == a_log[1].shape == (d, a_log[0].shape[1])
        assert projections[1].shape == projections[2].shape and pf.d_inner == pr.d_inner == d
        dev = pf.in_proj.device
        sizes = [t.numel() for t in projections]
        padded = [cdiv(n, PREP_PAD) * PREP_PAD for n in sizes]
        cast = torch.empty(sum(padded), device=dev, dtype=dtype)
        a2 = torch.empty(2, *a_log[0].shape, device=dev, dtype=torch.float32)  # (2, d, N)
        cwt = torch.empty(2, dc, d, device=dev, dtype=torch.float32)  # (2, DC, d)
        total = sum(padded) + a2.numel() + cwt.numel()
        assert total < 2**31, "the prep kernel takes 32-bit sizes"
        k = nvrtc_module(
            _PREP_SOURCE,
            (("IS_BF16", int(dtype == torch.bfloat16)), ("PAD", PREP_PAD)),
            ("prep_rows_weights",),
            device_index(cast),
        )
        k["prep_rows_weights"](
            grid=(min(cdiv(total, 256), 1024), 1, 1),
            block=(256, 1, 1),
            args=[*projections, cast, *sizes, *a_log, a2, a_log[0].numel(), *conv, cwt, d, dc],
        )
        w = [c[: t.numel()].view(t.shape) for c, t in zip(cast.split(padded), projections, strict=True)]
        scan = lambda p, i: ScanWeights(f(p.dt_weight), f(p.dt_bias), a2[i], f(p.D))  # noqa: E731
        return RowsWeights(
            w[0], (cwt[0], f(pf.conv_bias)), (cwt[1], f(pr.conv_bias)), w[1], w[2], scan(pf, 0), scan(pr, 1), w[3]
        )

    @staticmethod
    def of_torch(pf: MixerWeights, pr: MixerWeights, dtype: torch.dtype) -> RowsWeights:
        """Twin of ``of``: the same weights from torch ops (~12 small kernels)."""
        scan = lambda p: ScanWeights.of(p.dt_weight, p.dt_bias, -torch.exp(p.A_log.float()), p.D)  # noqa: E731
        return RowsWeights(
            pf.in_proj.to(dtype).contiguous(),
            conv_params(pf.conv_weight, pf.conv_bias),
            conv_params(pr.conv_weight, pr.conv_bias),
            pf.x_proj.to(dtype).contiguous(),
            pr.x_proj.to(dtype).contiguous(),
            scan(pf),
            scan(pr),
            pf.out_proj.to(dtype).contiguous(),
        )


def bimamba_rows(
    rows: torch.Tensor,
    length: int,
    pf: MixerWeights,
    pr: MixerWeights,
    out: torch.Tensor | None = None,
    max_rows: int | None = None,
) -> torch.Tensor:
    """Both directions of a BiMamba ("add"), summed, then out_proj: rows (n*L, D) -> (n*L, D).

    ``pf`` / ``pr``: the forward / reverse direction's ``mixer_ref.MixerWeights`` (in_proj and out_proj
    are tied: pf's are used). Twin: ``mixer_ref.bimamba_rows_ref``; same contract as the CPU
    ``mixer_numba.bimamba_rows``. The tie makes one in_proj GEMM serve both directions (x | z of a
    token do not depend on the direction) and one out_proj GEMM take their sum (it is linear); the
    reverse direction's conv and scan walk each row backwards and keep row order, so nothing is
    flipped. Both directions' convs run from one read of x (``scan_cuda.conv_silu_pair``); the forward scan
    leaves its output ungated and the reverse one gates the sum (silu(z) multiplies both at the same
    token). Intermediates: x | z, u_f (y_f, then the gated sum, is written over it),
    u_r and the two xdbl: about 4 * d_inner elements per token at the peak, plus one direction's delta
    (float32: 4 * d_inner bytes per token) while a scan of rows cut into many chunks runs (``reuse_delta``).
    ``out``: optional (n*L, D) destination. ``max_rows``: rows go through in groups of at most this many
    (bounding the intermediates), the weights cast and laid out once for all of them.
    """
    w = RowsWeights.of(pf, pr, rows.dtype)
    return in_row_groups(
        lambda r, o: _bimamba_group(r, length, w, o), rows, length, max_rows, out, lambda: torch.empty_like(rows)
    )


def _bimamba_group(rows: torch.Tensor, length: int, w: RowsWeights, out: torch.Tensor | None) -> torch.Tensor:
    d = w.scan_f.D.shape[0]
    xz = torch.mm(rows, w.in_proj.t())  # (n*L, 2d): x | z
    x, z = xz[:, :d], xz[:, d:]  # (n*L, d) views, row stride 2d
    u_f, u_r = conv_pair_prepared(x, w.conv_f, w.conv_r, length)
    xdbl_f = torch.mm(u_f, w.x_proj_f.t())  # (n*L, R + 2N)
    xdbl_r = torch.mm(u_r, w.x_proj_r.t())
    # the gate silu(z) multiplies both directions' outputs at the same token: applied once, to their sum
    y = scan_prepared(u_f, None, xdbl_f, w.scan_f, length, out=u_f, gate=False)  # C.h + D u over u_f
    del xdbl_f
    y = scan_prepared(u_r, z, xdbl_r, w.scan_r, length, out=y, reverse=True, add=y)  # (y_f + y_r) * silu(z) over y_f
    del u_r, xdbl_r, z, xz
    return torch.mm(y, w.out_proj.t(), out=out)
