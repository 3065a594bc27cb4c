"""Both directions of a BiMamba ("add") on the CPU: token-major rows, numba kernels between GEMMs.

    xz   = rows @ W_in^T                      (one GEMM: in_proj is tied, both directions share it)
    U[0] = silu(conv_fwd(x) + b_fwd)          _conv_rows: taps on t-3..t
    U[1] = silu(conv_rev(x) + b_rev)          taps on t+3..t (the reverse direction, forward positions)
    xdbl[d] = U[d] @ W_xproj[d]^T             (two GEMMs: [dt_low | B | C])
    y    = scan_fwd + scan_rev                _scan_block, per (row, block of up to 128 channels)
    out  = y @ W_out^T                        (one GEMM: out_proj is tied and linear)

Each kernel is a sequential body (``_conv_rows``, ``_scan_block``) under a thin ``prange`` driver:
the parfor pass then has little to analyse (cold compile ~4 s less than with the loops inside the
``prange``), and numba's OpenMP layer binds to torch's libgomp (torch is loaded first), so the
kernels and torch's GEMMs share one thread pool: no second pool spinning on the same cores.

No flip is materialised: the reverse direction reads the same x, z rows and walks time backwards.
The scan kernel computes, per position and channel, delta = softplus(dt_low W_dt^T + dt_bias) (the
dt projection fused), the 16 state updates with one vectorised exp each, D * u and the SiLU(z) gate,
with channels as SIMD lanes (a block's states and A stay in L1); the two directions of a block run
in the same work item, so y = y_fwd + y_rev is summed in a fixed order. The kernels read the
parameters as stored (A_log, dt_proj, conv weights): no per-call weight preparation in PyTorch.
Work items are (row, channel block) over numba's ``prange``; every output element is computed by
one thread in one order. The block width (128 channels, fewer when rows x blocks would
leave a thread idle) does not change any value: results do not depend on the thread count.

Twin: ``mixer_ref.bimamba_rows_ref`` (plain PyTorch, same signature).
"""

from __future__ import annotations

import numpy as np
import torch

from caduceus_cli.kernels.cpu_buffers import as_numpy, fresh, scratch
from caduceus_cli.kernels.mixer_ref import MixerWeights
from caduceus_cli.kernels.prefetch_numba import prefetch_span, prefetch_span_w
from caduceus_cli.kernels.row_groups import in_row_groups
from caduceus_cli.kernels.vmath_numba import (
    FASTMATH,
    LOG2E,
    exp2_neg,
    fexp,
    fma,
    nb,
    prefer_512_bit_vectors,
    silu,
    softplus,
)

BLOCK = 128  # channels per scan work item (fewer if d_inner is not a multiple): the states fit L1
MIN_BLOCK = 16
TIME_TILE = 512  # positions per work item of the conv kernel
SCAN_AHEAD = 16  # the scan prefetches the rows of the position this many steps ahead (prefetch_numba)
CONV_AHEAD = 4  # the conv prefetches the rows of the position this many ahead


def channel_block(d_inner: int, rows: int = 0) -> int:
    """Channels per scan work item: the largest of 128, 64, 32, 16 dividing d_inner that still gives
    every numba thread a work item (rows x blocks), else the smallest dividing one (0: none divides)."""
    sizes = [cb for cb in (BLOCK, 64, 32, MIN_BLOCK) if d_inner % cb == 0]
    if not sizes:
        return 0
    threads = nb.get_num_threads() if nb is not None else 1
    return next((cb for cb in sizes if rows * (d_inner // cb) >= threads), sizes[-1])


def supported(d_inner: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``bimamba_rows`` runs this case (else the caller keeps its PyTorch path)."""
    return nb is not None and device.type == "cpu" and dtype == torch.float32 and channel_block(d_inner) > 0


if nb is not None:

    @nb.njit(cache=True)
    def _tap(xz, base, s, length, zero):  # pragma: no cover - compiled
        """Row s of this sequence, or zeros outside [0, length) (the conv's padding)."""
        return xz[base + s] if 0 <= s < length else zero

    @nb.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def _conv_rows(xz, length, w, bd, out, base, t0, t1, dr):  # pragma: no cover - compiled
        """Positions [t0, t1) of the row starting at ``base``, one direction: out[base + t] = silu(conv + b)."""
        prefer_512_bit_vectors()
        di = out.shape[1]
        K = w.shape[1]
        wT = np.empty((K, di), np.float32)  # taps major: unit stride over channels
        for c in range(di):
            for k in range(K):
                wT[k, c] = w[c, k]
        zero = np.zeros(di, np.float32)
        acc = np.empty(di, np.float32)
        sgn = 1 if dr == 0 else -1
        for t in range(t0, t1):
            ta = t + CONV_AHEAD  # its newest tap row (x) and its output row, ahead of use, in this tile
            if ta < t1 and (dr == 0 or ta + K - 1 < length):
                prefetch_span(xz[base + ta + (K - 1 if dr else 0)], 0, di)
                prefetch_span_w(out[base + ta], 0, di)
            o = out[base + t]
            # forward: tap k reads x[t - (K-1) + k]; reverse (conv of the flipped row): x[t + (K-1) - k]
            if K == 4:  # one pass: taps summed in order, then bias and SiLU
                xs0 = _tap(xz, base, t - 3 * sgn, length, zero)
                xs1 = _tap(xz, base, t - 2 * sgn, length, zero)
                xs2 = _tap(xz, base, t - sgn, length, zero)
                xs3 = xz[base + t]
                w0, w1, w2, w3 = wT[0], wT[1], wT[2], wT[3]
                for c in range(di):
                    v = fma(w3[c], xs3[c], fma(w2[c], xs2[c], fma(w1[c], xs1[c], w0[c] * xs0[c])))
                    o[c] = silu(v + bd[c])
                continue
            for c in range(di):
                acc[c] = np.float32(0.0)
            for k in range(K):
                xs = _tap(xz, base, t - sgn * (K - 1 - k), length, zero)
                wk = wT[k]
                for c in range(di):
                    acc[c] = fma(wk[c], xs[c], acc[c])
            for c in range(di):
                o[c] = silu(acc[c] + bd[c])

    @nb.njit(parallel=True, cache=True)
    def _conv_kernel(xz, length, cw, cbias, U):  # pragma: no cover - compiled
        # xz (n*L, >= di): x in columns [0, di); cw: 2 x (di, K) conv weights; cbias: 2 x (di,); U (2, n*L, di) out.
        # Work items: (direction, row, tile of TIME_TILE positions).
        n = xz.shape[0] // length
        tiles = (length + TIME_TILE - 1) // TIME_TILE
        for item in nb.prange(2 * n * tiles):
            dr = item // (n * tiles)
            t0 = (item % tiles) * TIME_TILE
            base = ((item // tiles) % n) * length
            _conv_rows(xz, length, cw[dr], cbias[dr], U[dr], base, t0, min(length, t0 + TIME_TILE), dr)

    @nb.njit(fastmath=FASTMATH, error_model="numpy", cache=True)
    def _scan_block(U, xz, length, xdbl, dtw, dtb, A_log, Dv, y, row, c0, cb):  # pragma: no cover - compiled
        """Both directions of channels [c0, c0 + cb) of one row (see the module docstring)."""
        prefer_512_bit_vectors()
        di = y.shape[1]
        R = dtw[0].shape[1]
        N = A_log[0].shape[1]
        c1 = c0 + cb
        h = np.empty((N, cb), np.float32)
        Ab = np.empty((N, cb), np.float32)
        Wb = np.empty((R, cb), np.float32)
        bias = np.empty(cb, np.float32)
        Db = np.empty(cb, np.float32)
        dl = np.empty(cb, np.float32)
        du = np.empty(cb, np.float32)
        acc = np.empty(cb, np.float32)
        for dr in range(2):  # forward direction, then the reverse one (time walked backwards)
            Al, Wd, bd, Dd = A_log[dr], dtw[dr], dtb[dr], Dv[dr]
            for j in range(cb):
                for k in range(N):  # exp(delta A) = 2**(delta A log2 e), A = -exp(A_log)
                    Ab[k, j] = -fexp(Al[c0 + j, k]) * np.float32(LOG2E)
                    h[k, j] = np.float32(0.0)
                for r in range(R):
                    Wb[r, j] = Wd[c0 + j, r]
                bias[j] = bd[c0 + j]
                Db[j] = Dd[c0 + j]
            Ud = U[dr]
            X = xdbl[dr]
            for step in range(length):
                i = row * length + (step if dr == 0 else length - 1 - step)
                if step + SCAN_AHEAD < length:  # this block's rows of a later position
                    ia = i + SCAN_AHEAD if dr == 0 else i - SCAN_AHEAD
                    prefetch_span(Ud[ia], c0, c1)
                    prefetch_span(xz[ia], di + c0, di + c1)
                    prefetch_span_w(y[ia], c0, c1)
                    prefetch_span(X[ia], 0, X.shape[1])
                xd = X[i]
                ub = Ud[i][c0:c1]
                for j in range(cb):
                    acc[j] = np.float32(0.0)
                for r in range(R):  # delta = softplus(dt_low W_dt^T + dt_bias), summed over r in order
                    xr = xd[r]
                    wr = Wb[r]
                    for j in range(cb):
                        acc[j] = fma(wr[j], xr, acc[j])
                for j in range(cb):
                    d = softplus(acc[j] + bias[j])
                    dl[j] = d
                    du[j] = d * ub[j]
                    acc[j] = np.float32(0.0)
                # h = exp(delta A) h + delta u B;  acc = <h, C> summed over the states in order
                k = 0
                while k + 4 <= N:  # four states per pass: dl, du, acc loaded and stored once
                    b0, b1, b2, b3 = xd[R + k], xd[R + k + 1], xd[R + k + 2], xd[R + k + 3]
                    q0, q1, q2, q3 = xd[R + N + k], xd[R + N + k + 1], xd[R + N + k + 2], xd[R + N + k + 3]
                    a0, a1, a2, a3 = Ab[k], Ab[k + 1], Ab[k + 2], Ab[k + 3]
                    h0, h1, h2, h3 = h[k], h[k + 1], h[k + 2], h[k + 3]
                    for j in range(cb):
                        d = dl[j]
                        e = du[j]
                        s0 = fma(exp2_neg(d * a0[j]), h0[j], e * b0)
                        s1 = fma(exp2_neg(d * a1[j]), h1[j], e * b1)
                        s2 = fma(exp2_neg(d * a2[j]), h2[j], e * b2)
                        s3 = fma(exp2_neg(d * a3[j]), h3[j], e * b3)
                        h0[j] = s0
                        h1[j] = s1
                        h2[j] = s2
                        h3[j] = s3
                        acc[j] = fma(s3, q3, fma(s2, q2, fma(s1, q1, fma(s0, q0, acc[j]))))
                    k += 4
                while k < N:
                    bk = xd[R + k]
                    qk = xd[R + N + k]
                    ak = Ab[k]
                    hk = h[k]
                    for j in range(cb):
                        s = fma(exp2_neg(dl[j] * ak[j]), hk[j], du[j] * bk)
                        hk[j] = s
                        acc[j] = fma(s, qk, acc[j])
                    k += 1
                zb = xz[i][di + c0 : di + c1]
                yb = y[i][c0:c1]
                if dr == 0:  # y = (acc + D u) silu(z); silu(z) replaces z for the reverse direction
                    for j in range(cb):
                        g = silu(zb[j])
                        zb[j] = g
                        yb[j] = fma(Db[j], ub[j], acc[j]) * g
                else:  # which adds its own, gated by the same silu(z)
                    for j in range(cb):
                        yb[j] += fma(Db[j], ub[j], acc[j]) * zb[j]

    @nb.njit(parallel=True, cache=True)
    def _scan_kernel(U, xz, length, xdbl, dtw, dtb, A_log, Dv, y, cb):  # pragma: no cover - compiled
        # U (2, n*L, di); xz (n*L, 2 di): z in columns [di, 2 di), overwritten with silu(z); per direction (2-tuples):
        # xdbl (n*L, R + 2N) = [dt_low | B | C], dtw (di, R), dtb (di,), A_log (di, N), Dv (di,);
        # y (n*L, di) out. Work items: (row, channel block of cb).
        blocks = y.shape[1] // cb
        for item in nb.prange((y.shape[0] // length) * blocks):
            _scan_block(U, xz, length, xdbl, dtw, dtb, A_log, Dv, y, item // blocks, (item % blocks) * cb, cb)


def bimamba_rows(
    rows: torch.Tensor,
    length: int,
    pf: MixerWeights,
    pr: MixerWeights,
    out: torch.Tensor | None = None,
    max_rows: int | None = None,
) -> torch.Tensor:
    """Both directions of a BiMamba, summed, then out_proj: rows (n*L, D) float32 -> (n*L, D).

    ``pf`` / ``pr``: the forward / reverse Mamba's weights (in_proj and out_proj tied: pf's are used).
    ``out``: optional (n*L, D) destination. ``max_rows``: rows go through in groups of at most this
    many (bounding the intermediates). Inference only (no autograd).
    """
    new_out = lambda: fresh((rows.shape[0], pf.out_proj.shape[0]))  # noqa: E731
    return in_row_groups(lambda r, o: _bimamba_group(r, length, pf, pr, o), rows, length, max_rows, out, new_out)


def _bimamba_group(
    rows: torch.Tensor, length: int, pf: MixerWeights, pr: MixerWeights, out: torch.Tensor | None
) -> torch.Tensor:
    di = pf.d_inner
    nl = rows.shape[0]
    with torch.no_grad():
        w_in = pf.in_proj.detach().float()
        xz = torch.mm(rows.float(), w_in.t(), out=scratch("xz", (nl, 2 * di)))  # (n*L, 2 di): [x | z]
        U = scratch("u", (2, nl, di))
        xzn = xz.numpy()
        n = nl // length
        cw = (as_numpy(pf.conv_weight), as_numpy(pr.conv_weight))
        cbias = (as_numpy(pf.conv_bias), as_numpy(pr.conv_bias))
        _conv_kernel(xzn, length, cw, cbias, U.numpy())
        nx = pf.x_proj.shape[0]
        x_f = torch.mm(U[0], pf.x_proj.detach().float().t(), out=scratch("x_f", (nl, nx)))  # (n*L, R + 2N)
        x_r = torch.mm(U[1], pr.x_proj.detach().float().t(), out=scratch("x_r", (nl, nx)))
        y = scratch("y", (nl, di))
        cb = channel_block(di, n)
        _scan_kernel(
            U.numpy(),
            xzn,
            length,
            (x_f.numpy(), x_r.numpy()),
            (as_numpy(pf.dt_weight), as_numpy(pr.dt_weight)),
            (as_numpy(pf.dt_bias), as_numpy(pr.dt_bias)),
            (as_numpy(pf.A_log), as_numpy(pr.A_log)),
            (as_numpy(pf.D), as_numpy(pr.D)),
            y.numpy(),
            cb,
        )
        w_out = pf.out_proj.detach().float().t()  # (di, D)
        return torch.mm(y, w_out, out=fresh((nl, w_out.shape[1])) if out is None else out)
