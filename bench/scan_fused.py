"""Selective scan per call: mamba-ssm (the previous path) against the token-major NVRTC scan, GPU only.

    python bench/scan_fused.py [--out bench/results/scan_fused_h100.json]

Shapes: one direction of one d256 block, d_inner 512, N 16, R 16, bf16: (n=1, L=131,072) (one
row of the 131k cases) and (n=128, L=1,024) (one 2^17-token chunk of the 256 x 1,024 cases).
mamba-ssm gets what the previous path gave it (channel-major u, delta, z; B, C (n, 16, L));
the NVRTC scan gets token-major u, z and xdbl = [dt_low | B | C] and does the dt projection and
softplus itself. Each figure: the better of two rounds of a median of 30 (CUDA events) after warm-up. Also prints the floor of each shape:
exp/log/reciprocal operations over the MUFU rate (16 per clock per SM) and bytes over ~3.0 TB/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.kernels import scan_cuda  # noqa: E402

D, N, R = 512, 16, 16
BW = 3.0e12  # device-to-device copy, bytes read + written (KINDS.md, H100)


def sm_clock_hz() -> float:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
        return float(out.split()[0]) * 1e6
    except Exception:
        return 1.98e9


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    return statistics.median(ts)


def floor_ms(n, L, passes, clock):
    """MUFU and byte floors of one call (ms)."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    steps = n * L * D
    # per channel-step: N decays + softplus (exp, log) + silu(z) gate (exp, rcp); the state pass has no gate
    mufu = steps * ((N + 4) + (passes - 1) * (N + 2))
    bytes_ = n * L * (D * 2 * 3 + (R + 2 * N) * 2) + (passes - 1) * n * L * (D * 2 + (R + 2 * N) * 2)
    return mufu / (sms * 16 * clock) * 1e3, bytes_ / BW * 1e3


def bench_shape(n, L, g, clock, ncu):
    """One shape: every timing of the table for it (None in --ncu mode)."""
    t = lambda *s: torch.randn(*s, device="cuda", generator=g, dtype=torch.bfloat16)  # noqa: E731
    u, z = t(n * L, D), t(n * L, D)
    xdbl = (0.5 * t(n * L, R + 2 * N)).contiguous()
    Wdt = torch.randn(D, R, device="cuda", generator=g) * R**-0.5
    dtv = torch.exp(torch.rand(D, device="cuda", generator=g) * 4.6 - 6.9)
    dtb = dtv + torch.log(-torch.expm1(-dtv))
    A = -torch.arange(1, N + 1, device="cuda").float().repeat(D, 1) * torch.exp(
        0.3 * torch.randn(D, N, device="cuda", generator=g)
    )
    Dp = torch.ones(D, device="cuda")
    res = dict(n=n, L=L)
    try:
        if ncu:
            raise ImportError
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        ucm, zcm = u.t().contiguous().view(D, n, L).permute(1, 0, 2), z.t().contiguous().view(D, n, L).permute(1, 0, 2)
        delta = (xdbl[:, :R].float() @ Wdt.t()).to(torch.bfloat16).t().contiguous().view(D, n, L).permute(1, 0, 2)
        Bm = xdbl[:, R : R + N].reshape(n, L, N).transpose(1, 2).contiguous()
        Cm = xdbl[:, R + N :].reshape(n, L, N).transpose(1, 2).contiguous()
        res["mamba_ssm_ms"] = timed(
            lambda: selective_scan_fn(ucm, delta, A, Bm, Cm, Dp, z=zcm, delta_bias=dtb, delta_softplus=True)
        )
    except ImportError:
        res["mamba_ssm_ms"] = None
    out = torch.empty_like(u)
    chunk = scan_cuda.pick_chunk(n, D, L, 16, 128)
    res["chunk"] = chunk
    passes = 1 if chunk >= L else 2
    # (npoly, unroll, tile, min blocks per SM); the first is the default. A tile is the requested one:
    # scan_cuda.fit_tile halves it where the shared-memory tiles would not fit (t32 with delta reuse
    # on a long row runs at 16)
    variants = (
        [(None, None, None, None)]
        if ncu
        else [(None, None, None, None), (0, 2, 32, 1), (0, 1, 16, 5), (0, 2, 16, 5), (0, 1, 16, 6), (2, 1, 16, 5)]
    )
    for _round in range(1 if ncu else 2):
        for npoly, unroll, tile, minb in variants:
            fn = lambda p=npoly, r=unroll, t=tile, m=minb: scan_cuda.selective_scan_tm(  # noqa: E731
                u, z, xdbl, Wdt, dtb, A, Dp, L, npoly=p, unroll=r, tile=t, min_blocks=m, out=out
            )
            if ncu:
                fn()
                continue
            key = "nvrtc_default_ms" if npoly is None else f"nvrtc_p{npoly}_u{unroll}_t{tile}_b{minb}_ms"
            res[key] = min(res.get(key, 1e9), timed(fn, reps=30))
    if ncu:
        return None
    # conv + SiLU on x (n*L, D) -> u, against its byte floor (read x once, write u once)
    cw, cb = torch.randn(D, 4, device="cuda", generator=g), torch.randn(D, device="cuda", generator=g)
    res["conv_silu_ms"] = timed(lambda: scan_cuda.conv_silu(u, cw, cb, L))
    res["conv_floor_ms"] = n * L * D * 2 * 2 / BW * 1e3
    res["floor_mufu_ms"], res["floor_bytes_ms"] = floor_ms(n, L, passes, clock)
    res["passes"] = passes
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--ncu", action="store_true", help="one call of each kernel (for ncu), no timing")
    args = ap.parse_args()
    clock = sm_clock_hz()
    rows = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for n, L in ((1, 131_072), (128, 1_024)):
        res = bench_shape(n, L, g, clock, args.ncu)
        if res is not None:
            rows.append(res)
    print(f"SM clock used for the floor: {clock / 1e9:.2f} GHz")
    for r in rows:
        cells = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items())
        print(cells)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(device=torch.cuda.get_device_name(), clock_hz=clock, rows=rows), indent=2))


if __name__ == "__main__":
    main()
