"""Agreement of shared windows (and forced cluster windows) with centred windows: CAD_LLR on real calls.

    python bench/agree_shared.py --window 1024 --threads 2 --out bench/results/agree_shared_cpu.json
Model: the shipped default unless --model. Runs `--scores llr` centred, shared with every pass on the
whole tile (``--cluster-window W``) and shared with cluster windows of W/4 and W/8, then prints Pearson
and Spearman of each against centred, for SNV/MNV and indel ALTs apart, with the largest difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pysam
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ap = argparse.ArgumentParser()
ap.add_argument("--vcf", default=str(ROOT / "tests/data/chr22_10donors.vcf.gz"))
ap.add_argument("--ref", default=str(ROOT / "tests/data/chr22_slice.fa.gz"))
ap.add_argument("--model")
ap.add_argument("--window", type=int, default=1024)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--out", type=Path)
args = ap.parse_args()
torch.set_num_threads(args.threads)
W = args.window
runs = {
    "centred": {},
    "shared, whole tiles": dict(windows="shared", cluster_window=W),
    f"shared, cluster {W // 4}": dict(windows="shared", cluster_window=W // 4),
    f"shared, cluster {W // 8}": dict(windows="shared", cluster_window=W // 8),
}
values, meta = {}, {}
with tempfile.TemporaryDirectory() as tmp:
    for name, kw in runs.items():
        out = f"{tmp}/o.vcf.gz"
        t0 = time.perf_counter()
        s = score_vcf(args.vcf, args.ref, out, args.model, ScoreOptions(window=W, batch_size=16, scores=("llr",), **kw))
        meta[name] = dict(wall_s=time.perf_counter() - t0, forwards=s.windows_run, window_equivalents=s.tokens_run / W)
        with pysam.VariantFile(out) as vf:
            values[name] = [
                (len(r.ref) != len(a), (r.info.get("CAD_LLR") or (None,) * len(r.alts))[i])
                for r in vf
                for i, a in enumerate(r.alts or ())
            ]
res = dict(window=W, vcf=args.vcf, runs=meta, agreement={})
for name in list(runs)[1:]:
    for kind, indel in (("snv_mnv", False), ("indel", True)):
        pairs = np.array(
            [
                (x, y)
                for (k, x), (_, y) in zip(values["centred"], values[name], strict=True)
                if k == indel and x is not None and y is not None
            ]
        )  # (n, 2): centred, this run
        row = dict(
            n=len(pairs),
            pearson=float(np.corrcoef(pairs.T)[0, 1]),
            spearman=float(spearmanr(pairs[:, 0], pairs[:, 1])[0]),
            max_abs_diff=float(np.abs(pairs[:, 0] - pairs[:, 1]).max()),
        )
        res["agreement"][f"{name} / {kind}"] = row
        print(
            f"{name:>24} {kind:>8}: n {row['n']}, Pearson {row['pearson']:.5f}, Spearman {row['spearman']:.5f}, "
            f"max |diff| {row['max_abs_diff']:.3f}; {meta[name]['window_equivalents']:.1f} window equivalents"
        )
if args.out:
    args.out.write_text(json.dumps(res, indent=1))
