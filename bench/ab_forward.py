"""A/B of backend variants on the GPU: the four forward cases, flip-free path vs the literal composition.

    python bench/ab_forward.py --out ab.json
Each case: warm-up, then the median of 7 timed forwards (CUDA events), bf16 autocast, alternating variants.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.kernels.backend import get_backend  # noqa: E402
from caduceus_cli.model.caduceus import CaduceusForMaskedLM  # noqa: E402
from caduceus_cli.model.config import CaduceusConfig  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--out", type=Path)
args = ap.parse_args()
cuda = get_backend("cuda", "cuda")
variants = {"flip_free": cuda, "literal": replace(cuda, add_norm_pair=None)}
rows = []
for variant, batch, length in [("ps", 1, 131_072), ("ph", 1, 131_072), ("ps", 256, 1_024), ("ph", 256, 1_024)]:
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=256, n_layer=16, rcps=variant == "ps")).cuda().eval()
    ids = torch.randint(7, 11, (batch, length), device="cuda")
    times: dict[str, list[float]] = {k: [] for k in variants}
    outs = {}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for name, be in variants.items():
            for _ in range(2):
                outs[name] = model.caduceus.backbone(ids, be)[0]
        for _ in range(7):
            for name, be in variants.items():
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                model.caduceus.backbone(ids, be)
                e.record()
                torch.cuda.synchronize()
                times[name].append(s.elapsed_time(e) / 1e3)
    diff = ((outs["flip_free"].float() - outs["literal"].float()).norm() / outs["literal"].float().norm()).item()
    row = {"case": f"{variant} {batch}x{length}", "rel_diff_bf16": diff}
    row |= {name: statistics.median(t) for name, t in times.items()}
    row |= {f"{name}_Mtok_s": batch * length / statistics.median(t) / 1e6 for name, t in times.items()}
    rows.append(row)
    print(f"{row['case']:>14}  " + "  ".join(f"{k} {row[k]:.4f}s" for k in variants) + f"  rel.diff {diff:.1e}")
if args.out:
    args.out.write_text(json.dumps(rows, indent=2))
