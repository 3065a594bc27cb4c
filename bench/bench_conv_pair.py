"""Both directions' conv + SiLU of one BiMamba from one read of x (``scan_cuda.conv_silu_pair``)
against the two single-direction kernels it replaces, GPU only.

    python bench/bench_conv_pair.py [--out bench/results/conv_pair_h100.json]

Shapes: d256 blocks (d_inner 512, d_conv 4), bf16, x a column slice of x | z (row stride 1,024):
(n=1, L=131,072) (one row of the 131k cases) and (n=256, L=1,024) (2^18 tokens). "separate":
``conv_silu`` forward then reverse (the path before); "pair": ``conv_silu_pair``; the x_proj GEMMs
that follow are the same in both. Each figure: the better of two rounds of a median of 30 (CUDA
events) after warm-up. Floors at ~3.0 TB/s: separate reads x twice and writes u_f, u_r; pair reads x once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scan_fused  # noqa: E402  (bench/ is on the path when run as a script)

from caduceus_cli.kernels import scan_cuda  # noqa: E402

D, DC = 512, 4
BW = 3.0e12  # bytes read + written per second (H100 device-to-device copy)


def timed(fn: Callable[[], object]) -> float:
    """The better of two rounds of ``scan_fused.timed`` (median of 30 after warm-up)."""
    return min(scan_fused.timed(fn, 30), scan_fused.timed(fn, 30))


def bench_shape(
    n: int,
    L: int,
    r: Callable[..., torch.Tensor],
    conv_f: tuple[torch.Tensor, torch.Tensor],
    conv_r: tuple[torch.Tensor, torch.Tensor],
) -> dict:
    x = r(n * L, 2 * D).to(torch.bfloat16)[:, :D]  # (n*L, D), row stride 2D

    def separate():
        return scan_cuda.conv_silu(x, *conv_f, L), scan_cuda.conv_silu(x, *conv_r, L, reverse=True)

    def pair():
        return scan_cuda.conv_silu_pair(x, conv_f, conv_r, L)

    same = all(torch.equal(a, b) for a, b in zip(separate(), pair(), strict=True))
    tok_bytes = D * 2  # one bf16 row of x or u
    return {
        "n": n,
        "L": L,
        "separate_ms": timed(separate),
        "pair_ms": timed(pair),
        "separate_floor_ms": n * L * 4 * tok_bytes / BW * 1e3,
        "pair_floor_ms": n * L * 3 * tok_bytes / BW * 1e3,
        "bit_identical": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    g = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s, scale=1.0: scale * torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    conv_f, conv_r = (r(D, DC, scale=0.5), r(D, scale=0.1)), (r(D, DC, scale=0.5), r(D, scale=0.1))
    rows = [bench_shape(n, L, r, conv_f, conv_r) for n, L in ((1, 131072), (256, 1024))]
    print(f"{'shape':>14} {'separate ms':>12} {'(floor)':>8} {'pair ms':>8} {'(floor)':>8}  bit-identical")
    for w in rows:
        print(
            f"{w['n']:>5} x {w['L']:>6} {w['separate_ms']:12.3f} {w['separate_floor_ms']:8.3f}"
            f" {w['pair_ms']:8.3f} {w['pair_floor_ms']:8.3f}  {w['bit_identical']}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
