"""CPU forward against mamba.py (``mambapy``, pure PyTorch), the same work in the same process.

Ours: Caduceus-PS d128 x 4 at (1, 4,096): 4 layers x 2 directions x 2 RC halves = 16 Mamba
mixers of d_model 128 over 4,096 tokens. Theirs: ``mambapy.mamba.Mamba`` d128 x 16 layers (its
default parallel scan) on (1, 4,096, 128): 16 mixers of the same shape. Both float32, random
weights, no grad, 2 threads (torch and numba). Rounds alternate the paths so machine load hits
them alike; reported: medians, the ratio of medians and the median of per-round ratios.
``--previous`` also times, on the same model object, the CPU path before the numba mixer (the
literal composition: PyTorch projections and flips around the per-direction numba scan), selected
with ``Backend.add_norm_pair = None`` and ``Backend.bimamba_rows = None``.

mambapy is a bench-only dependency, never a runtime one: ``pip download mambapy==1.2.0 --no-deps``,
unzip the wheel and pass its folder with ``--mambapy-path`` (or have it installed).

    python bench/bench_cpu_mambapy.py --threads 2 --rounds 7 --previous --mambapy-path /tmp/mpy/site \\
        --out bench/results/forward_cpu_vs_mambapy.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.model.caduceus import CaduceusForMaskedLM  # noqa: E402
from caduceus_cli.model.config import CaduceusConfig  # noqa: E402


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(n)
    except ImportError:
        pass


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--length", type=int, default=4_096)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=4, help="Caduceus layers; mambapy gets 4x as many mixers")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--mambapy-path", type=Path, default=None, help="folder holding the unzipped mambapy wheel")
    ap.add_argument("--previous", action="store_true", help="also time the CPU path before the numba mixer")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.mambapy_path:
        sys.path.insert(0, str(args.mambapy_path))
    from mambapy.mamba import Mamba, MambaConfig

    set_threads(args.threads)
    torch.manual_seed(0)
    ours = CaduceusForMaskedLM(
        CaduceusConfig(d_model=args.d_model, n_layer=args.n_layer, rcps=True), backend=args.backend
    ).eval()
    theirs = Mamba(MambaConfig(d_model=args.d_model, n_layers=4 * args.n_layer)).eval()
    ids = torch.randint(7, 11, (1, args.length))
    x = torch.randn(1, args.length, args.d_model)

    current = ours.kernels(torch.device("cpu"))
    previous = dataclasses.replace(current, add_norm_pair=None, bimamba_rows=None)

    def run_with(kernels):
        def run() -> None:
            ours.kernels = lambda _dev: kernels  # instance override: same weights, the chosen path
            with torch.no_grad():
                ours(ids)

        return run

    def run_theirs() -> None:
        with torch.no_grad():
            theirs(x)

    paths = {"ours": run_with(current), "mambapy": run_theirs}
    if args.previous:
        paths["previous"] = run_with(previous)
    first_ours = timed(paths["ours"])  # includes numba compile or cache load
    for fn in paths.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(args.rounds):
        for k, fn in paths.items():
            times[k].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: med["mambapy"] / med[k] for k in paths if k != "mambapy"}
    round_ratio = {
        k: statistics.median([b / a for a, b in zip(times[k], times["mambapy"], strict=True)])
        for k in paths
        if k != "mambapy"
    }
    res = dict(
        meta=dict(
            cpu=platform.processor() or "cpu",
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            length=args.length,
            ours=f"Caduceus-PS d{args.d_model} x {args.n_layer} ({args.backend})",
            theirs=f"mambapy Mamba d{args.d_model} x {4 * args.n_layer}",
            rounds=args.rounds,
        ),
        ours_first_s=first_ours,
        seconds=times,
        median_s=med,
        mambapy_over_path_ratio_of_medians=ratio,
        mambapy_over_path_median_round_ratio=round_ratio,
    )
    for k in paths:
        extra = f"  vs mambapy: {ratio[k]:.2f}x (median round ratio {round_ratio[k]:.2f}x)" if k in ratio else ""
        print(f"{k:<9}{med[k]:>9.4f} s{extra}")
    print(f"ours first call {first_ours:.3f} s (numba compile or cache load included)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
