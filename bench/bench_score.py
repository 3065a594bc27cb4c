"""score-vcf end-to-end throughput against the bare forward throughput of the same model and window.

    python bench/bench_score.py --vcf examples/chr22_example.vcf.gz --ref examples/chr22_slice.fa.gz --threads 2
Model: the shipped default unless --model. "windows/s" counts model forwards; a shared tile's extra
passes run in shorter cluster windows, so work is counted in window equivalents (tokens run / W);
end-to-end efficiency = (window equivalents / wall time) / (bare forward windows/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.inference.engine import WindowEngine  # noqa: E402
from caduceus_cli.inference.passes import default_cluster  # noqa: E402
from caduceus_cli.inference.runtime import pick_device  # noqa: E402
from caduceus_cli.model.loading import load_model  # noqa: E402
from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--vcf", required=True)
ap.add_argument("--ref", required=True)
ap.add_argument("--model")
ap.add_argument("--window", type=int)
ap.add_argument("--batch-size", type=int, default=8)
ap.add_argument("--device", default="auto")
ap.add_argument("--threads", type=int)
ap.add_argument(
    "--modes",
    default="centred:llr,cos",
    help="runs WINDOWS:SCORES[:EVERY[:INDEL_MASKING[:CLUSTER]]] separated by '+' (EVERY: score every k-th record, a "
    "sample for slow modes; INDEL_MASKING span (default) or position; CLUSTER: --cluster-window in bp), e.g. "
    "centred:llr,cos:8+shared:llr,cos+shared:llr",
)
ap.add_argument("--out", type=Path)
args = ap.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
    import numba

    numba.set_num_threads(args.threads)
device = pick_device(args.device)
model = load_model(args.model, device=device)
W = args.window or model.config.max_seq_len
engine = WindowEngine(model, device, args.batch_size)
ids = torch.randint(7, 11, (args.batch_size * 4, W)).numpy()
engine.pooled_features(ids[: args.batch_size], W // 2, 768)  # warm-up (numba compile, kernels)
modes = [m.split(":") for m in args.modes.split("+")]
clusters = {int(m[4]) for m in modes if len(m) > 4 and m[4]} | {default_cluster(W)}
for length in {W} | {c for c in clusters if c < W}:  # and the masked path, at the window and cluster windows
    n = args.batch_size * (W // length)  # cluster windows run W // length times as many per forward
    warm = torch.randint(7, 11, (n, length)).numpy()
    engine.masked_logprobs_at(warm, [np.arange(8)] * n, n)
t0 = time.perf_counter()
engine.pooled_features(ids, W // 2, 768)
if device.type == "cuda":
    torch.cuda.synchronize()
bare = len(ids) / (time.perf_counter() - t0)
runs = []
with tempfile.TemporaryDirectory() as tmp:
    import gzip

    opener = gzip.open if args.vcf.endswith(".gz") else open
    with opener(args.vcf, "rt") as fh:
        lines = fh.read().splitlines(keepends=True)
    head, body = [x for x in lines if x.startswith("#")], [x for x in lines if not x.startswith("#")]
    for mode in args.modes.split("+"):
        windows, scores, *rest = mode.split(":")
        every = int(rest[0]) if rest and rest[0] else 1
        masking = rest[1] if len(rest) > 1 and rest[1] else "span"
        cluster = int(rest[2]) if len(rest) > 2 and rest[2] else None
        vcf = f"{tmp}/sample_{every}.vcf"
        Path(vcf).write_text("".join(head + body[::every]))
        opts = ScoreOptions(
            window=W,
            batch_size=args.batch_size,
            device=args.device,
            windows=windows,
            scores=tuple(scores.split(",")),
            indel_masking=masking,
            cluster_window=cluster,
        )
        t0 = time.perf_counter()
        s = score_vcf(vcf, args.ref, f"{tmp}/o.vcf.gz", args.model, opts)
        wall = time.perf_counter() - t0
        runs.append(
            dict(
                mode=mode,
                records=s.records,
                alts=s.alts,
                wall_s=wall,
                variants_per_s=s.alts / wall,
                windows=s.windows_run,
                window_equivalents=s.tokens_run / W,
                windows_per_s=s.windows_run / wall,
                efficiency=(s.tokens_run / W / wall) / bare,
            )
        )
        print(
            f"{mode:>20}: {s.records} records, {s.alts} ALTs in {wall:.1f} s = {s.alts / wall:.2f} variants/s; "
            f"{s.windows_run} forwards = {s.tokens_run / W:.1f} windows of {W} tokens, "
            f"{100 * (s.tokens_run / W / wall) / bare:.1f}% of bare forwards",
            flush=True,
        )
res = dict(
    device=str(device),
    gpu=torch.cuda.get_device_name() if device.type == "cuda" else None,
    threads=torch.get_num_threads(),
    window=W,
    bare_forward_windows_per_s=bare,
    runs=runs,
)
print(json.dumps(res, indent=2))
if args.out:
    args.out.write_text(json.dumps(res, indent=2))
