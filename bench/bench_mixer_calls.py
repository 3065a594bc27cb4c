"""How large the token-major mixer's calls should be, and what a CUDA graph would add (GPU only).

    python bench/bench_mixer_calls.py [--out bench/results/mixer_calls_h100.json]

PS and Ph d256 x 16 at 256 x 1,024 (bf16 autocast, random weights, the same model per variant):
the forward timed as ``bench_forward.py`` does (median of 7 after 2 warm-ups, CUDA events) with
short rows in mixer calls of 2^17, 2^18 and 2^19 tokens (``bimamba.MIXER_MAX_TOKENS_SHORT_ROWS``),
then 2^17 again (drift check), and the default forward captured once in a CUDA graph and replayed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import time_forward  # noqa: E402

from caduceus_cli.model import bimamba  # noqa: E402
from caduceus_cli.model.caduceus import CaduceusForMaskedLM  # noqa: E402
from caduceus_cli.model.config import CaduceusConfig  # noqa: E402


def graph_replay_s(model, ids, repeats: int = 9) -> float:
    """Median seconds of replaying the forward captured in a CUDA graph."""
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graphs asks
            for _ in range(2):
                model(ids)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            model(ids)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device("cuda")
    default = bimamba.MIXER_MAX_TOKENS_SHORT_ROWS
    rows = []
    for variant in ("ps", "ph"):
        torch.manual_seed(0)
        model = CaduceusForMaskedLM(CaduceusConfig(d_model=256, n_layer=16, rcps=variant == "ps")).to(device).eval()
        ids = torch.randint(7, 11, (256, 1024), device=device)
        for log2 in (17, 18, 19, 17):
            bimamba.MIXER_MAX_TOKENS_SHORT_ROWS = 1 << log2
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            sec = time_forward(model, ids, device, 7, autocast=True)
            peak = torch.cuda.max_memory_allocated() / 2**30
            rows.append(dict(variant=variant, call_tokens=1 << log2, seconds=sec, peak_gib=peak))
            print(f"{variant} calls of 2^{log2} tokens: {sec:.4f} s, peak {peak:.2f} GiB", flush=True)
        bimamba.MIXER_MAX_TOKENS_SHORT_ROWS = default
        sec = graph_replay_s(model, ids)
        rows.append(dict(variant=variant, call_tokens=default, cuda_graph=True, seconds=sec))
        print(f"{variant} default, CUDA graph replay: {sec:.4f} s", flush=True)
        del model
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(device=torch.cuda.get_device_name(), rows=rows), indent=2))


if __name__ == "__main__":
    main()
