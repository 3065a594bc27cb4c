"""Forward throughput (tokens/s) and peak memory of Caduceus PS / Ph models.

GPU (the issue's four figures; bf16 autocast, random weights):
    python bench/bench_forward.py --device cuda --out bench/results/forward_h100.json
    add --compare to also time, in the same process and on the same model, the previous path
    (mamba-ssm scan per chunk and direction instead of the token-major NVRTC BiMamba:
    ``Backend.bimamba_rows = None``)
CPU (d_model 128, 4-layer PS at L = 4,096, 2 threads):
    python bench/bench_forward.py --device cpu --threads 2 --out bench/results/forward_cpu.json
    add --compare to also time the previous CPU path on the same model (the literal composition:
    PyTorch projections, flips and add/norm around the per-direction numba scan:
    ``Backend.add_norm_pair = None``, ``Backend.bimamba_rows = None``); runs alternate the paths
Timings: warm-up, then the median of --repeats runs (CUDA events on the GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.model.caduceus import CaduceusForMaskedLM  # noqa: E402
from caduceus_cli.model.config import CaduceusConfig  # noqa: E402

GPU_CASES = [  # (variant, d_model, n_layer, batch, length)
    ("ps", 256, 16, 1, 131_072),
    ("ph", 256, 16, 1, 131_072),
    ("ps", 256, 16, 256, 1_024),
    ("ph", 256, 16, 256, 1_024),
]
CPU_CASES = [("ps", 128, 4, 1, 4_096), ("ph", 128, 4, 1, 4_096)]
REFERENCE_H100 = {  # the reference implementation, same H100 + kernels, bf16 autocast (from the issue)
    ("ps", 1, 131_072): 0.84e6,
    ("ph", 1, 131_072): 1.83e6,
    ("ps", 256, 1_024): 1.03e6,
    ("ph", 256, 1_024): 2.3e6,
}


def time_forward(model, ids, device, repeats, autocast):
    def run():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            model(ids)

    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def case_row(case: tuple, path: str, seconds: float, **fields) -> dict:
    """One result row: the case (variant, d_model, n_layer, batch, length), the path, its seconds, then ``fields``."""
    variant, d_model, n_layer, batch, length = case
    return (
        dict(variant=variant, d_model=d_model, n_layer=n_layer, batch=batch, length=length, path=path, seconds=seconds)
        | fields
    )


def cpu_rows(model, ids, variants, repeats, case) -> list[dict]:
    """Time CPU paths on one model, alternating them each round (machine load hits all alike)."""
    batch, length = case[3], case[4]

    def run(kern):
        model.kernels = lambda _dev, k=kern: k  # instance override: the same weights, the other path
        with torch.no_grad():
            model(ids)

    for _, kern in variants:
        run(kern)
        run(kern)
    times: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(repeats):
        for label, kern in variants:
            t0 = time.perf_counter()
            run(kern)
            times[label].append(time.perf_counter() - t0)
    out = []
    for label, kern in variants:
        sec = statistics.median(times[label])
        out.append(
            case_row(
                case,
                label,
                sec,
                seconds_all=times[label],
                tokens_per_s=batch * length / sec,
                peak_gib=None,
                backend=kern.name,
                numba_mixer=kern.bimamba_rows is not None,
                reference_tokens_per_s=None,
                speedup_vs_reference=None,
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--compare", action="store_true", help="also time the previous path (GPU: mamba-ssm scan; CPU: see above)"
    )
    ap.add_argument("--cases", default=None, help="comma-separated indices into the case list")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            import numba

            numba.set_num_threads(args.threads)
        except ImportError:
            pass
    device = torch.device(args.device)
    cases = GPU_CASES if device.type == "cuda" else CPU_CASES
    if args.cases:
        cases = [cases[int(i)] for i in args.cases.split(",")]
    rows = []
    for variant, d_model, n_layer, batch, length in cases:
        torch.manual_seed(0)
        model = (
            CaduceusForMaskedLM(
                CaduceusConfig(d_model=d_model, n_layer=n_layer, rcps=variant == "ps"), backend=args.backend
            )
            .to(device)
            .eval()
        )
        ids = torch.randint(7, 11, (batch, length), device=device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        variants = [("current", None)]
        if args.compare and device.type == "cuda":
            base = model.kernels(device)
            variants.append(("previous", dataclasses.replace(base, bimamba_rows=None)))
        if args.compare and device.type == "cpu":
            base = model.kernels(device)
            variants = [
                ("current", base),
                ("previous", dataclasses.replace(base, add_norm_pair=None, bimamba_rows=None)),
            ]
            rows.extend(cpu_rows(model, ids, variants, args.repeats, (variant, d_model, n_layer, batch, length)))
            del model
            continue
        for label, kern in variants:
            if kern is not None:
                model.kernels = lambda _dev, k=kern: k  # instance override: the same weights, the other path
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            sec = time_forward(model, ids, device, args.repeats, autocast=device.type == "cuda")
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
            tps = batch * length / sec
            ref = REFERENCE_H100.get((variant, batch, length)) if device.type == "cuda" else None
            k = model.kernels(device)
            rows.append(
                case_row(
                    (variant, d_model, n_layer, batch, length),
                    label,
                    sec,
                    tokens_per_s=tps,
                    peak_gib=peak,
                    backend=k.name,
                    token_major_mixer=k.bimamba_rows is not None,
                    reference_tokens_per_s=ref,
                    speedup_vs_reference=(tps / ref) if ref else None,
                )
            )
        del model
    meta = dict(
        device=torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        autocast_bf16=device.type == "cuda",
    )
    print(f"{'model':<6}{'B x L':>14}{'s/batch':>10}{'Mtok/s':>9}{'peak GiB':>10}{'vs ref':>8}  backend / path")
    for r in rows:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        sp = f"{r['speedup_vs_reference']:.2f}x" if r["speedup_vs_reference"] else "-"
        print(
            f"{r['variant'] + str(r['n_layer']):<6}{r['batch']:>6} x {r['length']:<7}{r['seconds']:>10.4f}"
            f"{r['tokens_per_s'] / 1e6:>9.3f}{peak:>10}{sp:>8}  {r['backend']} / {r.get('path', '')}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(meta=meta, results=rows), indent=2))


if __name__ == "__main__":
    main()
