"""Experiment (measured, not used by the product): a state-split selective scan, one pass over long rows.

    python bench/experiments/scan_split.py [--out bench/results/scan_split_h100.json]

The product's scan (``caduceus_cli/kernels/scan_cuda.py``) keeps a channel's 16 states in one
thread. A 131,072-token row then offers only d_inner threads, so it is cut into chunks and scanned
twice (a state pass, then the full pass): the state pass is 44% of PS 131k's scan. This kernel
puts a channel's 16 states in 16 lanes of one warp instead (lane l holds state l), so two rows of
d_inner 512 give 16,384 threads, one warp per scheduler of an H100, without chunks and in one pass;
the two directions of a block run in one launch (stacked weights). A block covers CHB channels
and walks its row in tiles of 16 positions, three stages overlapped per iteration:

    stage 1 (tile i+1): lane l computes delta and delta*u of position l (dt projection + softplus)
    stage 2 (tile i):   the recurrence, h = exp2(delta A2) h + delta u B, and the partial C_t h
    stage 3 (tile i-1): lane l sums position l's 16 partials (shared memory), adds D u, gates

with u, z and dt_low / B / C staged by cp.async three tiles ahead. It matches the twin
(``mixer_ref.selective_scan_tm_ref``): bf16 <= 2.7e-5 relative (the parity this script prints,
``bench/results/scan_split_h100.json``); float32 <= 1.1e-7 (the gpu tests it had while in the
package).

Measured on the H100 (``bench/results/scan_split_h100.json``, ``scan_experiments_*_h100.json``):
5.0-5.2 ms for two rows of 131,072 against 2.1-2.3 ms for the product scan's two chunked passes,
and slower at every other shape (16 x 8,192; 128 x 1,024). SASS: ~350 instructions per warp per
16-position tile of 2 channels, 10.9 per channel-position, against 5.1 for the product's loop
(163 per position for 32 channels): the per-lane softplus and gate, the delta broadcast, the
16-way sum of y through shared memory and the staging for 8 channels per block cost more than the
second pass they remove; with one warp per scheduler it also issued only ~0.28 instructions per
cycle. Each figure: best of two rounds of a median of 20 (CUDA events) after warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_fused import timed  # noqa: E402  (bench/scan_fused.py: warm-up, then the median of CUDA-event timings)

from caduceus_cli.kernels import mixer_ref, scan_cuda  # noqa: E402
from caduceus_cli.kernels.scan_cuda import LOG2E, device_index, nvrtc_module  # noqa: E402

D, N, R = 512, 16, 16
ONCE = False  # --once: one call of each kernel per shape (for ncu)

_SPLIT_SOURCE = r"""
#define TT NS                           // positions per tile: one per lane of a channel
#define NT (CHB * NS)                   // threads per block
#define XW (RK + 2 * NS)                // a row of xdbl: dt_low | B | C
#define DTS (RK + 4)                    // staged dt_low row (floats): 16-byte reads of 8 lanes hit 8 bank groups
#define CONV (TT * DTS + TT * NS * 2)   // one tile's converted xdbl: dt_low rows, then (B_t, C_t, B_t+1, C_t+1) per state
#define RST (TT * (NS + 4) + 16)        // per-channel stride of the partial-y buffer (floats)
#define XCH (TT * XW / VEC)             // 16-byte chunks of a tile of xdbl
#define UCH (TT * CHB / VEC)            // 16-byte chunks of a tile of u (or z)
#define NROLE (XCH + 2 * UCH)           // cp.async chunks per tile
#define RPT ((NROLE + NT - 1) / NT)     // chunks per thread

__device__ __forceinline__ void cp_async16z(void* smem, const void* gmem, bool valid) {
    unsigned int s = (unsigned int)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(s), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
}

extern "C" __global__ void __launch_bounds__(NT, MINB) scan_split(
    const st_t* u, const st_t* __restrict__ z, const st_t* __restrict__ xd, st_t* y,
    const float* __restrict__ Wdt, const float* __restrict__ dtb, const float* __restrict__ A2,
    const float* __restrict__ Dp, int L, int d, int ldz, int rows_per_group) {
    __shared__ __align__(16) st_t xraw[4][TT * XW];      // cp.async target, tiles i+2 and i+3
    __shared__ __align__(16) float xcv[3][CONV];         // converted: tiles i (B, C), i+1 (dt_low), i+2
    __shared__ __align__(16) st_t us[8][TT][CHB];
    __shared__ __align__(16) st_t zs[8][TT][CHB];
    __shared__ __align__(16) st_t ys[2][TT][CHB];
    __shared__ __align__(16) float dd[2][TT / 2][CHB][4]; // (delta_t, delta_t u_t, delta_t+1, delta_t+1 u_t+1)
    __shared__ __align__(16) float red[CHB * RST];       // partial y: [channel][position][state]

    const int tid = threadIdx.x;
    const int cl = tid / NS;                      // channel within the block
    const int l = tid - cl * NS;                  // this lane's state; also its position in stages 1 and 3
    const int c0 = blockIdx.x * CHB;
    const int b = blockIdx.y;                     // row
    const long long row0 = (long long)b * L;
    const int ntiles = (L + TT - 1) / TT;
    const long long wo = (long long)(b / rows_per_group) * d + c0 + cl;   // weight group (direction), channel

    float w[RK];
#pragma unroll
    for (int r = 0; r < RK; ++r) w[r] = Wdt[wo * RK + r];
    const float bias = dtb[wo];
    const float a2 = A2[wo * NS + l];
    const float Dv = Dp[wo];
    float h = 0.f;

    // this thread's cp.async chunks: kind 0 xdbl, 1 u, 2 z; where an xdbl chunk's VEC values go once converted
    int kind[RPT], sidx[RPT], dst0[RPT], dstep[RPT];
    long long goff[RPT];
#pragma unroll
    for (int j = 0; j < RPT; ++j) {
        const int v = tid + j * NT;
        kind[j] = v < XCH ? 0 : (v < XCH + UCH ? 1 : (v < NROLE ? 2 : 3));
        const int q = kind[j] == 0 ? v : (kind[j] == 1 ? v - XCH : v - XCH - UCH);
        if (kind[j] == 0) {                       // element e = q*VEC of the tile: row r, column c
            const int e = q * VEC, r = e / XW, c = e - r * XW;
            sidx[j] = r;
            goff[j] = (long long)e;
            // dt_low -> xcv[r * DTS + c]; B_n -> TT*DTS + ((r/2) * NS + n) * 4 + (r&1)*2; C_n: +1
            dst0[j] = c < RK ? r * DTS + c
                             : TT * DTS + ((r >> 1) * NS + (c - RK) % NS) * 4 + (r & 1) * 2 + (c - RK) / NS;
            dstep[j] = c < RK ? 1 : 4;            // a chunk never straddles dt_low / B / C (checked on the host)
        } else {
            const int r = q / (CHB / VEC), cc = (q - r * (CHB / VEC)) * VEC;
            sidx[j] = r * CHB + cc;               // element offset within us/zs[buf]
            goff[j] = (long long)r * (kind[j] == 1 ? d : ldz) + c0 + cc;
            dst0[j] = r;                          // row (validity)
            dstep[j] = 0;
        }
    }
    auto issue = [&](int tile) {                  // cp.async one tile (zeros past the row's end)
        const int tb = tile * TT;
#pragma unroll
        for (int j = 0; j < RPT; ++j) {
            if (kind[j] == 0) {
                const bool ok = tb + sidx[j] < L;
                cp_async16z(&xraw[tile & 3][goff[j]], xd + (row0 + tb) * XW + (ok ? goff[j] : 0), ok);
            } else if (kind[j] < 3) {
                const bool ok = tb + dst0[j] < L;
                st_t* dst = (kind[j] == 1 ? &us[tile & 7][0][0] : &zs[tile & 7][0][0]) + sidx[j];
                const st_t* src = (kind[j] == 1 ? u + (row0 + tb) * (long long)d : z + (row0 + tb) * (long long)ldz);
                cp_async16z(dst, src + (ok ? goff[j] : 0), ok);
            }
        }
        cp_commit();
    };
    auto convert = [&](int tile) {                // this thread's own xdbl chunks of a landed tile -> float
        float* out = xcv[tile % 3];
#pragma unroll
        for (int j = 0; j < RPT; ++j) {
            if (kind[j] == 0) {
                const uint4 raw = *reinterpret_cast<const uint4*>(&xraw[tile & 3][goff[j]]);
                const st_t* v = reinterpret_cast<const st_t*>(&raw);
#pragma unroll
                for (int k = 0; k < VEC; ++k) out[dst0[j] + k * dstep[j]] = tof(v[k]);
            }
        }
    };
    auto stage1 = [&](int tile, float& dlt, float& du) {   // delta, delta*u of position l
        const float4* xr = reinterpret_cast<const float4*>(xcv[tile % 3] + l * DTS);
        float dp[4] = {bias, 0.f, 0.f, 0.f};
#pragma unroll
        for (int r = 0; r < RK / 4; ++r) {
            const float4 v = xr[r];
            dp[0] = fmaf(w[4 * r], v.x, dp[0]);
            dp[1] = fmaf(w[4 * r + 1], v.y, dp[1]);
            dp[2] = fmaf(w[4 * r + 2], v.z, dp[2]);
            dp[3] = fmaf(w[4 * r + 3], v.w, dp[3]);
        }
        dlt = softplus((dp[0] + dp[1]) + (dp[2] + dp[3]));
        du = dlt * tof(us[tile & 7][l][cl]);
    };
    auto stage3 = [&](int tile) {                 // y of position l from its partials
        const float4* rp = reinterpret_cast<const float4*>(red + cl * RST + l * (NS + 4));
        float s[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int n = 0; n < NS / 4; ++n) {
            const float4 v = rp[n];
            s[0] += v.x; s[1] += v.y; s[2] += v.z; s[3] += v.w;
        }
        const float uu = tof(us[tile & 7][l][cl]);
        const float zz = tof(zs[tile & 7][l][cl]);
        ys[tile & 1][l][cl] = fromf(fmaf(uu, Dv, (s[0] + s[1]) + (s[2] + s[3])) * silu(zz));
    };
    auto copy_out = [&](int tile) {               // y of a tile to global (16-byte vectors)
        const int tb = tile * TT;
#pragma unroll
        for (int j = 0; j < (UCH + NT - 1) / NT; ++j) {
            const int v = tid + j * NT;
            const int r = v / (CHB / VEC), c = (v - r * (CHB / VEC)) * VEC;
            if (v < UCH && tb + r < L)
                *reinterpret_cast<uint4*>(y + (row0 + tb + r) * (long long)d + c0 + c) =
                    *reinterpret_cast<const uint4*>(&ys[tile & 1][r][c]);
        }
    };

    // prologue: tiles 0..2 in flight, 0 and 1 converted, stage 1 of tile 0 done
    issue(0);
    issue(1);
    issue(2);
    cp_wait1();
    convert(0);
    convert(1);
    __syncthreads();
    {
        float dl, du;
        stage1(0, dl, du);
        *reinterpret_cast<float2*>(&dd[0][l >> 1][cl][(l & 1) * 2]) = make_float2(dl, du);
    }
    for (int i = 0; i < ntiles; ++i) {
        __syncthreads();                          // tile i+1 converted; dd[i], red(i-1) written; ys[i-2] free
        if (i >= 2) copy_out(i - 2);
        if (i + 3 < ntiles) issue(i + 3); else cp_commit();
        float ndl = 0.f, ndu = 0.f;
        if (i + 1 < ntiles) stage1(i + 1, ndl, ndu);
        // stage 2: the recurrence over tile i, two positions per 16-byte read
        float p[TT];
        const float4* bc = reinterpret_cast<const float4*>(xcv[i % 3] + TT * DTS) + l;
#pragma unroll
        for (int tp = 0; tp < TT / 2; ++tp) {
            const float4 q = *reinterpret_cast<const float4*>(&dd[i & 1][tp][cl][0]);
            const float4 v = bc[tp * NS];
            h = fmaf(ex2(q.x * a2), h, q.y * v.x);
            p[2 * tp] = h * v.y;
            h = fmaf(ex2(q.z * a2), h, q.w * v.z);
            p[2 * tp + 1] = h * v.w;
        }
        if (i >= 1) stage3(i - 1);
        __syncwarp();                             // a channel's lanes (one warp) have read red(i-1)
        float* rw = red + cl * RST + l;
#pragma unroll
        for (int t = 0; t < TT; ++t) rw[t * (NS + 4)] = p[t];
        if (i + 1 < ntiles) *reinterpret_cast<float2*>(&dd[(i + 1) & 1][l >> 1][cl][(l & 1) * 2]) = make_float2(ndl, ndu);
        cp_wait1();                               // tile i+2 landed (this thread's chunks)
        if (i + 2 < ntiles) convert(i + 2);
    }
    __syncthreads();
    stage3(ntiles - 1);
    __syncthreads();
    if (ntiles >= 2) copy_out(ntiles - 2);
    copy_out(ntiles - 1);
}
"""


def selective_scan_split(
    u: torch.Tensor,
    z: torch.Tensor,
    xdbl: torch.Tensor,
    dt_weight: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    length: int,
    out: torch.Tensor | None = None,
    channels: int | None = None,
    min_blocks: int | None = None,
) -> torch.Tensor:
    """Selective scan, one state per lane (twin: ``mixer_ref.selective_scan_tm_ref`` per group).

    u (n*L, d) dense, z (n*L, d) (row stride may exceed d), xdbl (n*L, R + 2N) = [dt_low | B | C];
    weights either one direction's (dt_weight (d, R), dt_bias (d,), A (d, N), D (d,)) or G
    directions' stacked ((G, d, R), (G, d), (G, d, N), (G, d)): the n rows are G equal groups,
    group g scanned with weights g. ``out`` may be ``u`` (y written over u). Returns (n*L, d).
    """
    ntok, d = u.shape
    n = ntok // length
    Wdt, dtb, A_, D_ = (
        t if t.dim() == w else t.unsqueeze(0) for t, w in ((dt_weight, 3), (dt_bias, 2), (A, 3), (D, 2))
    )
    groups, ns, rk = A_.shape[0], A_.shape[2], Wdt.shape[2]
    esz = u.element_size()
    assert ntok == n * length and n % groups == 0 and u.is_contiguous() and z.stride(1) == 1
    assert xdbl.is_contiguous() and xdbl.shape[1] == rk + 2 * ns and u.dtype == z.dtype == xdbl.dtype
    assert ns == 16 and rk % 8 == 0 and u.dtype == torch.bfloat16 and A_.shape[1] == d
    assert z.data_ptr() % 16 == 0 and (z.stride(0) * esz) % 16 == 0 and u.data_ptr() % 16 == 0
    chb = channels or 8
    chb = max(chb, 16 // esz)  # a tile row of u / z is at least one 16-byte vector
    if d % chb:
        raise ValueError(f"d_inner {d} is not a multiple of {chb} channels per block")
    k = nvrtc_module(
        _SPLIT_SOURCE,
        (
            ("IS_BF16", int(u.dtype == torch.bfloat16)),
            ("NS", ns),
            ("RK", rk),
            ("CHB", chb),
            ("MINB", min_blocks or 1),
        ),
        ("scan_split",),
        device_index(u),
    )
    y = torch.empty_like(u) if out is None else out
    k["scan_split"](
        grid=(d // chb, n, 1),
        block=(chb * ns, 1, 1),
        args=[
            u,
            z,
            xdbl,
            y,
            Wdt.float().contiguous(),
            dtb.float().contiguous(),
            (A_.float() * LOG2E).contiguous(),
            D_.float().contiguous(),
            length,
            d,
            z.stride(0),
            n // groups,
        ],
    )
    return y


def weights(groups, g):
    Wdt = torch.randn(groups, D, R, device="cuda", generator=g) * R**-0.5
    dtv = torch.exp(torch.rand(groups, D, device="cuda", generator=g) * 4.6 - 6.9)
    dtb = dtv + torch.log(-torch.expm1(-dtv))
    A = -torch.arange(1, N + 1, device="cuda").float().repeat(groups, D, 1) * torch.exp(
        0.3 * torch.randn(groups, D, N, device="cuda", generator=g)
    )
    Dp = 1.0 + 0.1 * torch.randn(groups, D, device="cuda", generator=g)
    return Wdt, dtb, A, Dp


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def bench_shape(n, L, groups, g, variants):
    t = lambda *s: torch.randn(*s, device="cuda", generator=g, dtype=torch.bfloat16)  # noqa: E731
    u, z = t(n * L, D), t(n * L, D)
    xdbl = (0.5 * t(n * L, R + 2 * N)).contiguous()
    Wdt, dtb, A, Dp = weights(groups, g)
    per = n // groups
    out_old = torch.empty_like(u)

    def old(out=out_old):
        for k in range(groups):  # one launch sequence per weight group, as the model runs
            s, e = k * per * L, (k + 1) * per * L
            scan_cuda.selective_scan_tm(u[s:e], z[s:e], xdbl[s:e], Wdt[k], dtb[k], A[k], Dp[k], L, out=out[s:e])

    res = dict(n=n, L=L, groups=groups, chunk=scan_cuda.pick_chunk(per, D, L, 16, 128))
    old()
    ref = out_old.clone()
    outs = {}
    if ONCE:  # one call of each kernel (for ncu)
        old()
        for chb, minb in variants:
            selective_scan_split(u, z, xdbl, Wdt, dtb, A, Dp, L, channels=chb, min_blocks=minb)
        torch.cuda.synchronize()
        return None
    for _round in range(2):
        res["channel_ms"] = min(res.get("channel_ms", 1e9), timed(old))
        for chb, minb in variants:
            out = torch.empty_like(u)
            fn = lambda c=chb, m=minb, o=out: selective_scan_split(  # noqa: E731
                u, z, xdbl, Wdt, dtb, A, Dp, L, out=o, channels=c, min_blocks=m
            )
            key = f"split_c{chb}_b{minb}_ms"
            res[key] = min(res.get(key, 1e9), timed(fn))
            outs[key] = out
    for key, out in outs.items():
        res[key.replace("_ms", "_relerr")] = rel(out, ref)
    return res


def parity() -> list[dict]:
    """The kernel against its twin on small shapes (tails shorter than a tile, two weight groups)."""
    rows = []
    g = torch.Generator(device="cuda").manual_seed(1)
    for n, L, groups in ((3, 77, 1), (2, 1000, 2), (1, 4096, 1), (2, 5, 2)):
        d = 128
        Wdt, dtb, A, Dp = (t[:, :d] for t in weights(groups, g))
        u = torch.randn(n * L, d, device="cuda", generator=g).to(torch.bfloat16)
        z = torch.randn(n * L, d, device="cuda", generator=g).to(torch.bfloat16)
        xdbl = (0.5 * torch.randn(n * L, R + 2 * N, device="cuda", generator=g)).to(torch.bfloat16)
        per = n // groups
        want = torch.cat(
            [
                mixer_ref.selective_scan_tm_ref(
                    u[k * per * L : (k + 1) * per * L],
                    z[k * per * L : (k + 1) * per * L],
                    xdbl[k * per * L : (k + 1) * per * L],
                    Wdt[k],
                    dtb[k],
                    A[k],
                    Dp[k],
                    L,
                )
                for k in range(groups)
            ]
        )
        got = selective_scan_split(u, z, xdbl, Wdt, dtb, A, Dp, L)
        rows.append(dict(n=n, L=L, groups=groups, relerr_vs_twin=rel(got, want)))
    return rows


def print_row(r: dict) -> None:
    print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)


def save(out: Path | None, checks: list[dict], rows: list[dict]) -> None:
    """The parity checks and timing rows as JSON, with the device's name (``--out``)."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(device=torch.cuda.get_device_name(), parity=checks, rows=rows), indent=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--once", action="store_true", help="one call of each kernel per shape, no timing (for ncu)")
    args = ap.parse_args()
    global ONCE
    ONCE = args.once
    g = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(1, 131_072, 1), (2, 131_072, 2), (2, 131_072, 1), (4, 131_072, 2), (16, 8_192, 2), (128, 1_024, 1)]
    variants = [(8, 1), (4, 2)]
    if args.quick:
        shapes, variants = [shapes[1], shapes[-1]], variants[:1]
    checks = parity()
    for c in checks:
        print(f"parity n={c['n']} L={c['L']} groups={c['groups']}: rel err vs twin {c['relerr_vs_twin']:.2e}")
    rows = []
    for n, L, groups in shapes:
        r = bench_shape(n, L, groups, g, variants)
        if r is None:
            continue
        rows.append(r)
        print_row(r)
    save(args.out, checks, rows)


if __name__ == "__main__":
    main()
