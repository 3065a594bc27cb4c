"""Training throughput (tokens/s, forward + backward + AdamW step, bf16 autocast).

    python bench/bench_train.py --out bench/results/train_h100.json
Cases: the shipped configuration (PS d128 x 4, L = 1,024, batch 64) and PS d256 x 16
at 131,072 tokens per sequence (batch 1). Median of --repeats steps after warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.model.caduceus import CaduceusForMaskedLM  # noqa: E402
from caduceus_cli.model.config import CaduceusConfig  # noqa: E402

CASES = [("shipped ps d128x4", 128, 4, 64, 1_024), ("ps d256x16 131k", 256, 16, 1, 131_072)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = []
    for name, d, n, b, L in CASES:
        torch.manual_seed(0)
        model = CaduceusForMaskedLM(CaduceusConfig(d_model=d, n_layer=n, rcps=True)).cuda().train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        ids = torch.randint(7, 11, (b, L), device="cuda")
        labels = torch.where(torch.rand(b, L, device="cuda") < 0.15, ids, torch.full_like(ids, -100))
        torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(2 + args.repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(ids).logits
            F.cross_entropy(logits.view(-1, 16), labels.view(-1), ignore_index=-100).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            e.record()
            torch.cuda.synchronize()
            if i >= 2:
                times.append(s.elapsed_time(e) / 1e3)
        t = statistics.median(times)
        rows.append(
            dict(
                case=name,
                batch=b,
                length=L,
                seconds_per_step=t,
                tokens_per_s=b * L / t,
                peak_gib=torch.cuda.max_memory_allocated() / 2**30,
            )
        )
        print(
            f"{name:<20} {b:>4} x {L:<7} {t:.4f} s/step  {b * L / t / 1e6:.3f} Mtok/s  peak {rows[-1]['peak_gib']:.1f} GiB"
        )
        del model, opt
        torch.cuda.empty_cache()
    if args.out:
        args.out.write_text(json.dumps(dict(device=torch.cuda.get_device_name(), results=rows), indent=2))


if __name__ == "__main__":
    main()
