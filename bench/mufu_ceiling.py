"""What the scan's loop can reach on this GPU, against what the scan kernels reach, GPU only.

    python bench/mufu_ceiling.py [--out bench/results/mufu_ceiling_h100.json]

Three questions the earlier scan changes left open (bench/README.md, "Scan tuning"):
1. The SM clock while MUFU-heavy kernels run (every floor so far assumed the 1.98 GHz maximum):
   read in-kernel, clock64 against globaltimer, block 0 of each kernel below.
2. The MUFU ex2 rate per SM per clock (assumed 16): independent ``ex2.approx.ftz`` chains, no other
   work, at 16 and 32 warps per SM.
3. The scan's position loop alone, from registers and one constant shared-memory tile (no global
   loads, no cp.async staging, no barriers), at the product's 128 threads x 4 blocks per SM: the state
   pass's loop (dt projection, softplus, 16 decays), the same with delta read from shared memory
   (no dt projection), and the full pass's loop with delta read (16 decays and C . h). Compared with
   ``scan_state`` / ``scan_full`` themselves on one 131,072-token row (d_inner 512, bf16), timed
   alone: cycles per warp-position per scheduler for each.
If the loops alone run near the real kernels' rate, the staging is not what holds the scan back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scan_fused import timed  # noqa: E402  (bench/: median ms of 20 by CUDA events after 3 warm-ups)

from caduceus_cli.kernels import scan_cuda  # noqa: E402

D, N, R, L = 512, 16, 16, 131_072

# Each kernel: thread 0 of block 0 writes clock64 and globaltimer at its start and end to stamp[0..3].
_SOURCE = r"""
__device__ __forceinline__ unsigned long long gtimer() {
    unsigned long long t; asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t)); return t;
}
#define STAMP_START unsigned long long c0 = clock64(), g0 = gtimer();
#define STAMP_END if (blockIdx.x == 0 && threadIdx.x == 0) { \
    stamp[0] = c0; stamp[1] = clock64(); stamp[2] = g0; stamp[3] = gtimer(); }

// 16 independent chains of x = 2^-x per thread (x stays in (0.5, 1)): MUFU only
extern "C" __global__ void __launch_bounds__(128) ex2_rate(float* out, unsigned long long* stamp, int iters) {
    STAMP_START
    float x[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = 0.5f + 0.01f * i + 1e-6f * threadIdx.x;
    for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int i = 0; i < 16; ++i) x[i] = ex2(-x[i]);
    }
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < 16; ++i) s += x[i];
    out[blockIdx.x * blockDim.x + threadIdx.x] = s;
    STAMP_END
}

// The scan's position loop without staging: MODE 0 the state pass (dt projection + softplus + 16
// decays), MODE 1 the state pass with delta read from shared memory, MODE 2 the full pass with delta
// read (16 decays + C . h + D u, y stored to shared memory). TT positions per tile, as in scan_chunk.
extern "C" __global__ void __launch_bounds__(128, 4) scan_loop(
    const float* __restrict__ Wdt, const float* __restrict__ A2, float* out, unsigned long long* stamp, int tiles) {
    STAMP_START
    __shared__ __align__(16) float xs[TT][RK + 2 * NS];
    __shared__ __align__(16) unsigned short us[TT][128];
    __shared__ __align__(16) float ds[TT][128];
    const int tid = threadIdx.x, ch = (blockIdx.x * 128 + tid) % 512;
    for (int i = tid; i < TT * (RK + 2 * NS); i += 128) (&xs[0][0])[i] = 0.01f * ((i * 37) % 101) - 0.5f;
    for (int i = tid; i < TT * 128; i += 128) { (&us[0][0])[i] = fromf(0.3f); (&ds[0][0])[i] = 0.02f; }
    __syncthreads();
    float w[RK], a2[NS], h[NS];
#pragma unroll
    for (int r = 0; r < RK; ++r) w[r] = Wdt[ch * RK + r];
#pragma unroll
    for (int n = 0; n < NS; ++n) { a2[n] = A2[ch * NS + n]; h[n] = 0.f; }
    float S = 0.f, ysum = 0.f;
    for (int it = 0; it < tiles; ++it) {
        for (int t = 0; t < TT; ++t) {
            const float* xr = xs[t];
            float delta;
            if (MODE == 0) {
                float dp[4] = {0.1f, 0.f, 0.f, 0.f};
#pragma unroll
                for (int r = 0; r < RK; ++r) dp[r & 3] = fmaf(w[r], xr[r], dp[r & 3]);
                delta = softplus((dp[0] + dp[1]) + (dp[2] + dp[3]));
            } else {
                delta = ds[t][tid];
            }
            const float uu = tof(us[t][tid]);
            const float du = delta * uu;
            float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int n = 0; n < NS; ++n) {
                const float dA = ex2(delta * a2[n]);
                h[n] = fmaf(dA, h[n], du * xr[RK + n]);
                if (MODE == 2) acc[n & 3] = fmaf(h[n], xr[RK + NS + n], acc[n & 3]);
            }
            if (MODE == 2) ysum += fmaf(uu, 1.f, (acc[0] + acc[1]) + (acc[2] + acc[3]));
            else S += delta;
        }
    }
    float s = S + ysum;
#pragma unroll
    for (int n = 0; n < NS; ++n) s += h[n];
    out[blockIdx.x * blockDim.x + tid] = s;
    STAMP_END
}
"""


def run_kernel(fn, grid: int, args: list, reps: int = 5) -> tuple[float, float]:
    """(median ms by CUDA events, SM clock in Hz from block 0's clock64 / globaltimer); args[-2]: the stamp."""
    ts, clocks = [], []
    for i in range(reps + 2):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn(grid=(grid, 1, 1), block=(128, 1, 1), args=args)
        e.record()
        torch.cuda.synchronize()
        if i >= 2:
            ts.append(s.elapsed_time(e))
            st = args[-2].tolist()
            clocks.append((st[1] - st[0]) / max(st[3] - st[2], 1) * 1e9)
    return statistics.median(ts), statistics.median(clocks)


def scan_alone(dev: torch.device) -> dict:
    """One direction's scan call (scan_prepared) as bimamba_rows makes it, on one 131,072-token row and on
    128 rows of 1,024: the forward direction (ungated) and the reverse one (gated, y_f added); median ms
    of 20 (CUDA events) and a hash of the output's bits (fixed inputs: equal hashes from two trees mean
    bit-identical kernels). For the 131k forward call, each kernel's time from the profiler."""
    g = torch.Generator(device=dev).manual_seed(0)
    t = lambda *s: torch.randn(*s, device=dev, generator=g, dtype=torch.bfloat16)  # noqa: E731
    Wdt = torch.randn(D, R, device=dev, generator=g) * R**-0.5
    dtv = torch.exp(torch.rand(D, device=dev, generator=g) * 4.6 - 6.9)
    dtb = dtv + torch.log(-torch.expm1(-dtv))
    A = -torch.arange(1, N + 1, device=dev).float().repeat(D, 1)
    w = scan_cuda.ScanWeights.of(Wdt, dtb, A, torch.ones(D, device=dev))
    res = {}
    for name, n, length in (("row131k", 1, L), ("rows1k", 128, 1024)):
        res.update(scan_calls(name, n, length, w, t))
    return res


def scan_calls(name: str, n: int, length: int, w: scan_cuda.ScanWeights, t) -> dict:
    u, z, ya = t(n * length, D), t(n * length, D), t(n * length, D)
    xdbl = (0.5 * t(n * length, R + 2 * N)).contiguous()
    out = torch.empty_like(u)
    fwd = lambda: scan_cuda.scan_prepared(u, None, xdbl, w, length, out=out, gate=False)  # noqa: E731
    rev = lambda: scan_cuda.scan_prepared(u, z, xdbl, w, length, out=out, reverse=True, add=ya)  # noqa: E731
    res = {f"{name}_fwd_ms": timed(fwd), f"{name}_rev_ms": timed(rev)}
    for key, fn in (("fwd", fwd), ("rev", rev)):  # the outputs' bits, to compare two trees' kernels
        res[f"{name}_{key}_sha1"] = hashlib.sha1(fn().cpu().view(torch.uint8).numpy().tobytes()).hexdigest()[:12]
    if name == "row131k":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                fwd()
            torch.cuda.synchronize()
        for ev in prof.key_averages():
            if ev.key in ("scan_state", "scan_full", "scan_combine"):
                res[f"{name}_fwd_{ev.key}_us"] = ev.device_time_total / max(ev.count, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--scan-only", action="store_true", help="only the scan kernels' calls (scan_alone)")
    args = ap.parse_args()
    dev = torch.device("cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    res: dict = dict(device=torch.cuda.get_device_name(), sms=sms)
    stamp = torch.zeros(4, device=dev, dtype=torch.int64)

    if args.scan_only:
        res["scan_calls"] = scan_alone(dev)
        return report(res, args.out)
    k = scan_cuda.nvrtc_module(_SOURCE, (("IS_BF16", 1), ("TT", 16), ("RK", R), ("NS", N), ("MODE", 0)),
                               ("ex2_rate", "scan_loop"), 0)  # fmt: skip
    iters = 4096
    for per_sm in (4, 8):
        grid = sms * per_sm
        out = torch.empty(grid * 128, device=dev)
        ms, clk = run_kernel(k["ex2_rate"], grid, [out, stamp, iters])
        ops = grid * 128 * 16 * iters
        res[f"ex2_{per_sm * 4}warps"] = dict(
            ms=ms, clock_ghz=clk / 1e9, ex2_per_sm_per_clock=ops / (ms * 1e-3 * clk * sms)
        )

    Wdt = torch.randn(D, R, device=dev) * R**-0.5
    A2 = -torch.arange(1, N + 1, device=dev).float().repeat(D, 1) * 1.4426950408889634 * 0.05
    tiles = 256  # 4,096 positions per warp
    for mode, name in ((0, "state_loop"), (1, "state_loop_delta_read"), (2, "full_loop_delta_read")):
        km = scan_cuda.nvrtc_module(_SOURCE, (("IS_BF16", 1), ("TT", 16), ("RK", R), ("NS", N), ("MODE", mode)),
                                    ("ex2_rate", "scan_loop"), 0)  # fmt: skip
        grid = sms * 4
        out = torch.empty(grid * 128, device=dev)
        ms, clk = run_kernel(km["scan_loop"], grid, [Wdt, A2, out, stamp, tiles])
        warp_positions = grid * 4 * tiles * 16
        res[name] = dict(
            ms=ms, clock_ghz=clk / 1e9,
            cycles_per_warp_position_per_scheduler=ms * 1e-3 * clk * sms * 4 / warp_positions,
        )  # fmt: skip

    per = scan_alone(dev)
    clk = res.get("full_loop_delta_read", {}).get("clock_ghz", 1.98) * 1e9
    warp_positions = L * D / 32
    for key in ("scan_state", "scan_full"):
        us = per.get(f"row131k_fwd_{key}_us")
        if us is not None:
            per[f"row131k_fwd_{key}_cycles_per_warp_position_per_scheduler"] = (
                us * 1e-6 * clk * sms * 4 / warp_positions
            )
    res["scan_calls"] = per
    report(res, args.out)


def report(res: dict, out: Path | None) -> None:
    print(json.dumps(res, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
