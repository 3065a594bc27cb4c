"""Top CUDA kernels of one bf16 forward (PS d256 n16, B=1, L=131,072): where the time goes.

python bench/profile_forward.py [--variant ps] [--batch 1] [--length 131072]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.model.caduceus import CaduceusForMaskedLM  # noqa: E402
from caduceus_cli.model.config import CaduceusConfig  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--variant", default="ps")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--length", type=int, default=131_072)
args = ap.parse_args()
model = CaduceusForMaskedLM(CaduceusConfig(d_model=256, n_layer=16, rcps=args.variant == "ps")).cuda().eval()
ids = torch.randint(7, 11, (args.batch, args.length), device="cuda")
with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
    for _ in range(2):
        model(ids)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        model(ids)
        torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))
