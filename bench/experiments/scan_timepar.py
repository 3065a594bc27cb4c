"""Experiment (not used by the product): a time-parallel selective scan, one pass over long rows.

    python bench/experiments/scan_timepar.py [--out bench/results/scan_timepar_h100.json]

The product's scan keeps a channel's 16 states in one thread and walks positions; a 131,072-token
row then offers only d_inner threads, so it is cut into chunks and every chunk's decays are
evaluated twice (``scan_state``, then ``scan_full``). Here one warp owns one channel and its 32
lanes own consecutive runs of IT positions (a segment of 32 * IT positions per step), as
mamba-ssm's kernel does within a block:

    per state group (G states):
      sweep 1 (registers): dA_i = exp2(delta_i A2), H = dA_i H + delta_i u_i B_i from zero,
                           P = exp2(A2 sum_i delta_i): the lane's run as the map h -> P h + H
      warp scan:           inclusive (P, H) over the 32 lanes (5 shuffle steps); the lane's start
                           state is the previous lane's map applied to the channel's carry
      sweep 2 (registers): h_i = dA_i h_{i-1} + delta_i u_i B_i from that start, y_i += C_i . h_i

so each decay is evaluated once and kept in registers between the two sweeps; the carry (lane n
holds state n's) crosses segments. The price: the shuffle scan per state and segment, and the
per-lane reads of dt_low / B / C (no broadcast: every lane needs its own positions), staged as
float32 in shared memory with positions permuted so that 16-byte reads of 4 items are contiguous
across lanes. Both directions of a layer run in one launch (blockIdx.z; stacked inputs).

Status: did not pay. Run on one H100 (2026-12-07, through timepar_integration.patch, which moves
this kernel into the product and times it there; ``bench/results/scan_timepar_h100.json``): it
matches the twin but takes 5.5-6.9 ms for both directions of a 131k row against the product's
2.09 ms, latency bound (one warp walks its channel's segments in series). Compiled for sm_90 (IT 8 /
G 4: 167 registers, no spills); algorithm checked in numpy (``scan_timepar_emu.py``). The
measurements and why: bench/README.md, "What is left for 2x".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan_fused import timed  # noqa: E402  (bench/scan_fused.py: warm-up, then the median of CUDA-event timings)
from scan_split import D, N, R, print_row, rel, save, weights  # noqa: E402  (same weights, error, output)

from caduceus_cli.kernels import mixer_ref, scan_cuda  # noqa: E402
from caduceus_cli.kernels.scan_cuda import LOG2E, device_index, nvrtc_module  # noqa: E402

_TP_SOURCE = r"""
#define XW (RK + 2 * NS)                // a row of xdbl: dt_low | B | C
#define SEG (32 * IT)                   // positions per segment (one warp step)
#define NQ (IT / 4)                     // 4-item quads per lane
#define NT (32 * CHB)                   // threads per block: one warp per channel

// position p of a segment (lane p / IT, item p % IT) -> its slot in a staged row: the quad of 4
// items of every lane is contiguous, so lane l's float4 read of quad q is at (q * 32 + l) * 4
__device__ __forceinline__ int slot(int p) {
    const int l = p / IT, i = p - l * IT;
    return ((i >> 2) * 32 + l) * 4 + (i & 3);
}
__device__ __forceinline__ int unslot(int s) {   // slot(unslot(s)) == s
    const int qd = s >> 7, l = (s >> 2) & 31, e = s & 3;
    return l * IT + qd * 4 + e;
}

// u, xd: (2, n*L, d) / (2, n*L, XW) stacked directions; z (n*L, ldz); y (2, n*L, d);
// Wdt (2, d, RK), dtb (2, d), A2 (2, d, NS) = A * log2 e, Dp (2, d). Direction dir0 + blockIdx.z;
// direction 1 walks each row backwards (walk position q is row position L-1-q).
extern "C" __global__ void __launch_bounds__(NT, MINB) scan_tp(
    const st_t* __restrict__ u, const st_t* __restrict__ z, const st_t* __restrict__ xd, st_t* __restrict__ y,
    const float* __restrict__ Wdt, const float* __restrict__ dtb, const float* __restrict__ A2,
    const float* __restrict__ Dp, int L, int d, int ldz, int nrows, int dir0) {
    extern __shared__ __align__(16) float xs[];   // [XW][SEG], positions permuted by slot()
    const int lane = threadIdx.x & 31, wp = threadIdx.x >> 5;
    const int dir = dir0 + blockIdx.z;
    const int b = blockIdx.y;
    const int ch = blockIdx.x * CHB + wp;
    const long long ntok = (long long)nrows * L;
    const long long row0 = (long long)b * L;
    auto tok = [&](int q) { return row0 + (dir ? L - 1 - q : q); };
    const st_t* ud = u + dir * ntok * d;
    const st_t* xdd = xd + dir * ntok * XW;
    st_t* yd = y + dir * ntok * d;
    const int cd = dir * d + ch;

    float w[RK];
#pragma unroll
    for (int r = 0; r < RK; ++r) w[r] = Wdt[cd * RK + r];
    const float bias = dtb[cd], Dv = Dp[cd];
    float carry = 0.f;                            // lane n < NS: state n at the end of the last segment

    for (int s0 = 0; s0 < L; s0 += SEG) {
        __syncthreads();                          // the previous segment's reads of xs are done
        // thread v stages 16-byte vector v / SEG of the position in slot v % SEG: consecutive threads
        // write consecutive words of a staged row (no bank conflicts)
        for (int v = threadIdx.x; v < SEG * (XW / VEC); v += NT) {
            const int cv = (v / SEG) * VEC, sl = v % SEG;
            const int p = unslot(sl);
            const int q = s0 + p;
            if (q < L) {
                const uint4 raw = *reinterpret_cast<const uint4*>(xdd + tok(q) * XW + cv);
                const st_t* e = reinterpret_cast<const st_t*>(&raw);
#pragma unroll
                for (int k = 0; k < VEC; ++k) xs[(cv + k) * SEG + sl] = tof(e[k]);
            } else {
#pragma unroll
                for (int k = 0; k < VEC; ++k) xs[(cv + k) * SEG + sl] = 0.f;
            }
        }
        __syncthreads();

        const int pb = s0 + lane * IT;            // this lane's first walk position
        float uu[IT], zz[IT], dt[IT], dtx[IT], yacc[IT];
#pragma unroll
        for (int i = 0; i < IT; ++i) {
            const bool ok = pb + i < L;
            const long long t = ok ? tok(pb + i) : row0;
            uu[i] = ok ? tof(ud[t * d + ch]) : 0.f;
            zz[i] = ok ? tof(z[t * ldz + ch]) : 0.f;
        }
        // delta = softplus(W_dt . dt_low + bias), 4 items per 16-byte read
        float dp[IT];
#pragma unroll
        for (int i = 0; i < IT; ++i) dp[i] = bias;
#pragma unroll
        for (int r = 0; r < RK; ++r) {
#pragma unroll
            for (int qd = 0; qd < NQ; ++qd) {
                const float4 v = *reinterpret_cast<const float4*>(&xs[r * SEG + (qd * 32 + lane) * 4]);
                dp[qd * 4 + 0] = fmaf(w[r], v.x, dp[qd * 4 + 0]);
                dp[qd * 4 + 1] = fmaf(w[r], v.y, dp[qd * 4 + 1]);
                dp[qd * 4 + 2] = fmaf(w[r], v.z, dp[qd * 4 + 2]);
                dp[qd * 4 + 3] = fmaf(w[r], v.w, dp[qd * 4 + 3]);
            }
        }
        float sumdt = 0.f;
#pragma unroll
        for (int i = 0; i < IT; ++i) {
            dt[i] = (pb + i < L) ? softplus(dp[i]) : 0.f;   // past the row: identity steps
            dtx[i] = dt[i] * uu[i];
            sumdt += dt[i];
            yacc[i] = 0.f;
        }

#pragma unroll 1
        for (int g = 0; g < NS; g += G) {
            float dA[G][IT], bx[G][IT], P[G], H[G];
#pragma unroll
            for (int k = 0; k < G; ++k) {
                const int n = g + k;
                const float an = __ldg(A2 + cd * NS + n);   // L1-resident: one load per state and segment
#pragma unroll
                for (int qd = 0; qd < NQ; ++qd) {
                    const float4 v = *reinterpret_cast<const float4*>(&xs[(RK + n) * SEG + (qd * 32 + lane) * 4]);
                    bx[k][qd * 4 + 0] = v.x * dtx[qd * 4 + 0];
                    bx[k][qd * 4 + 1] = v.y * dtx[qd * 4 + 1];
                    bx[k][qd * 4 + 2] = v.z * dtx[qd * 4 + 2];
                    bx[k][qd * 4 + 3] = v.w * dtx[qd * 4 + 3];
                }
                float h = 0.f;
#pragma unroll
                for (int i = 0; i < IT; ++i) {
                    dA[k][i] = ex2(dt[i] * an);
                    h = fmaf(dA[k][i], h, bx[k][i]);
                }
                H[k] = h;
                P[k] = ex2(an * sumdt);
            }
#pragma unroll
            for (int off = 1; off < 32; off <<= 1) {
#pragma unroll
                for (int k = 0; k < G; ++k) {
                    const float pu = __shfl_up_sync(0xffffffffu, P[k], off);
                    const float hu = __shfl_up_sync(0xffffffffu, H[k], off);
                    if (lane >= off) { H[k] = fmaf(P[k], hu, H[k]); P[k] *= pu; }
                }
            }
#pragma unroll
            for (int k = 0; k < G; ++k) {
                const int n = g + k;
                const float c = __shfl_sync(0xffffffffu, carry, n);
                float pe = __shfl_up_sync(0xffffffffu, P[k], 1);
                float he = __shfl_up_sync(0xffffffffu, H[k], 1);
                if (lane == 0) { pe = 1.f; he = 0.f; }
                const float pt = __shfl_sync(0xffffffffu, P[k], 31);
                const float ht = __shfl_sync(0xffffffffu, H[k], 31);
                if (lane == n) carry = fmaf(pt, c, ht);
                float h = fmaf(pe, c, he);
#pragma unroll
                for (int qd = 0; qd < NQ; ++qd) {
                    const float4 v = *reinterpret_cast<const float4*>(&xs[(RK + NS + n) * SEG + (qd * 32 + lane) * 4]);
                    const float cv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int i = qd * 4 + e;
                        h = fmaf(dA[k][i], h, bx[k][i]);
                        yacc[i] = fmaf(cv[e], h, yacc[i]);
                    }
                }
            }
        }
#pragma unroll
        for (int i = 0; i < IT; ++i) {
            if (pb + i < L) {
                const float yv = fmaf(uu[i], Dv, yacc[i]) * silu(zz[i]);
                yd[tok(pb + i) * d + ch] = fromf(yv);
            }
        }
    }
}
"""


def scan_timepar(
    u2: torch.Tensor,
    z: torch.Tensor,
    xdbl2: torch.Tensor,
    dt_weight2: torch.Tensor,
    dt_bias2: torch.Tensor,
    A2: torch.Tensor,
    D2: torch.Tensor,
    length: int,
    dirs: tuple[int, ...] = (0, 1),
    out: torch.Tensor | None = None,
    items: int = 8,
    group: int = 4,
    channels: int = 4,
    min_blocks: int = 1,
) -> torch.Tensor:
    """Both directions' scans (stacked on dim 0: u2 (2, n*L, d), xdbl2 (2, n*L, R+2N), weights (2, ...)),
    direction 1 walking rows backwards; z (n*L, d) shared. ``dirs``: (0,), (1,) or (0, 1) in one launch.
    Returns y2 (2, n*L, d) (directions not run are left as they were)."""
    _, ntok, d = u2.shape
    ns, rk = A2.shape[2], dt_weight2.shape[2]
    n = ntok // length
    assert u2.dtype == torch.bfloat16 and z.stride(1) == 1 and xdbl2.is_contiguous() and u2.is_contiguous()
    assert dirs in ((0,), (1,), (0, 1)) and ns <= 32  # the carry: one lane per state
    assert items % 4 == 0 and ns % group == 0 and d % channels == 0 and (rk + 2 * ns) % 8 == 0
    k = nvrtc_module(
        _TP_SOURCE,
        (
            ("IS_BF16", 1),
            ("NS", ns),
            ("RK", rk),
            ("IT", items),
            ("G", group),
            ("CHB", channels),
            ("MINB", min_blocks),
        ),
        ("scan_tp",),
        device_index(u2),
    )
    fn = k["scan_tp"]
    smem = (rk + 2 * ns) * 32 * items * 4
    if hasattr(fn, "set_shared_memory_config"):
        if smem > fn._max_shared_mem_bytes:
            fn.set_shared_memory_config(smem)  # torch's launcher asks for it from 48 KiB on
    elif smem > 48 * 1024:  # an older launcher: the driver's opt-in, directly
        from torch.cuda._utils import _get_gpu_runtime_library  # noqa: PLC0415

        max_dynamic_shared = 8  # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        _get_gpu_runtime_library().cuFuncSetAttribute(fn.func, max_dynamic_shared, smem)
    y2 = torch.empty_like(u2) if out is None else out
    fn(
        grid=(d // channels, n, len(dirs)),
        block=(32 * channels, 1, 1),
        args=[
            u2,
            z,
            xdbl2,
            y2,
            dt_weight2.float().contiguous(),
            dt_bias2.float().contiguous(),
            (A2.float() * LOG2E).contiguous(),
            D2.float().contiguous(),
            length,
            d,
            z.stride(0),
            n,
            dirs[0],
        ],
        shared_mem=smem,
    )
    return y2


def product_scan(u2, z, xdbl2, Wdt, dtb, A, Dp, L, y2, dirs=(0, 1)):
    """The product's chunked two-pass scan, one direction after the other (no add: separate outputs)."""
    for k in dirs:
        scan_cuda.selective_scan_tm(u2[k], z, xdbl2[k], Wdt[k], dtb[k], A[k], Dp[k], L, out=y2[k], reverse=bool(k))


def inputs(n, L, g, d=D):
    t = lambda *s: torch.randn(*s, device="cuda", generator=g, dtype=torch.bfloat16)  # noqa: E731
    u2, z = t(2, n * L, d), t(n * L, d)
    xdbl2 = (0.5 * t(2, n * L, R + 2 * N)).contiguous()
    Wdt, dtb, A, Dp = (w[:, :d].contiguous() for w in weights(2, g))
    return u2, z, xdbl2, Wdt, dtb, A, Dp


def parity() -> list[dict]:
    """Against the twin (each direction; the reverse one through flips) on small shapes with tails."""
    rows = []
    g = torch.Generator(device="cuda").manual_seed(1)
    for n, L in ((3, 77), (2, 1000), (1, 4096), (2, 5)):
        u2, z, xdbl2, Wdt, dtb, A, Dp = inputs(n, L, g, d=128)
        got = scan_timepar(u2, z, xdbl2, Wdt, dtb, A, Dp, L)
        for k in (0, 1):
            if k == 0:
                want = mixer_ref.selective_scan_tm_ref(u2[0], z, xdbl2[0], Wdt[0], dtb[0], A[0], Dp[0], L)
            else:
                fl = [t.reshape(n, L, -1).flip(1).reshape(n * L, -1) for t in (u2[1], z, xdbl2[1])]
                want = mixer_ref.selective_scan_tm_ref(*fl, Wdt[1], dtb[1], A[1], Dp[1], L)
                want = want.reshape(n, L, -1).flip(1).reshape(n * L, -1)
            rows.append(dict(n=n, L=L, direction=k, relerr_vs_twin=rel(got[k], want)))
    return rows


def bench_shape(n, L, g, variants):
    u2, z, xdbl2, Wdt, dtb, A, Dp = inputs(n, L, g)
    ref = torch.empty_like(u2)
    res = dict(n=n, L=L, chunk=scan_cuda.pick_chunk(n, D, L, 16, 128))
    product_scan(u2, z, xdbl2, Wdt, dtb, A, Dp, L, ref)
    outs = {}
    for _round in range(2):
        for dirs in ((0,), (0, 1)):
            key = f"product_{len(dirs)}dir_ms"
            res[key] = min(
                res.get(key, 1e9), timed(lambda d_=dirs: product_scan(u2, z, xdbl2, Wdt, dtb, A, Dp, L, ref, d_))
            )
        for it, gr, chb, minb in variants:
            for dirs in ((0,), (0, 1)):
                out = torch.empty_like(u2)
                key = f"tp_i{it}_g{gr}_c{chb}_b{minb}_{len(dirs)}dir_ms"
                fn = lambda d_=dirs, o=out, a=(it, gr, chb, minb): scan_timepar(  # noqa: E731
                    u2, z, xdbl2, Wdt, dtb, A, Dp, L, d_, o, *a
                )
                try:
                    res[key] = min(res.get(key, 1e9), timed(fn))
                except (RuntimeError, ImportError, AttributeError) as err:  # a limit or launcher this torch lacks
                    res[key.replace("_ms", "_error")] = str(err).splitlines()[0][:200]
                    continue
                if len(dirs) == 2:
                    outs[key] = out
    for key, out in outs.items():
        res[key.replace("_ms", "_relerr")] = rel(out, ref)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    checks = parity()
    for c in checks:
        print(
            f"parity n={c['n']} L={c['L']} dir={c['direction']}: rel err vs twin {c['relerr_vs_twin']:.2e}", flush=True
        )
    g = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(1, 131_072), (2, 131_072)]
    variants = [(8, 4, 4, 1), (8, 2, 4, 2), (8, 4, 8, 1), (16, 2, 4, 1), (4, 4, 4, 2)]
    if args.quick:
        shapes, variants = shapes[:1], variants[:2]
    rows = []
    for n, L in shapes:
        r = bench_shape(n, L, g, variants)
        rows.append(r)
        print_row(r)
    save(args.out, checks, rows)


if __name__ == "__main__":
    main()
