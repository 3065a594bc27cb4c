"""Fine-tuning throughput: sequences/s and peak GPU memory of ``finetune --method full``'s training loop.

    python bench/bench_finetune.py --device cuda --out bench/results/finetune_h100.json
    python bench/bench_finetune.py --device cpu --steps 2 --lengths 256        # smoke check

Model: a PS Caduceus backbone (rcps=True, d_model 256, 4 layers, the published configs' other settings:
d_state 16, expand 2, d_conv 4, RMS norm, fused add-norm, bidirectional 'add' with tied weights),
random init, + the RC-invariant mean-pooled classification head (``SequenceHeadModel``, 2 classes).
Data: synthetic sequences of exactly L bp (no padding, no cropping), each drawn with its own GC
fraction in [0.3, 0.7], labelled GC > 0.5 (learnable). Loop: ``training.finetune.FinetuneTrainer`` itself
(collate, AdamW with head and backbone groups, warm-up + cosine, clipping at 1.0, bf16 autocast on a GPU
with precision auto), no validation set, one checkpoint at the end (not timed).

Timing: a step runs from its call of ``loop.set_lr`` to the return of its ``loop.clip_and_step`` (batch
collation, host-to-device copy, forward, backward, clipping, AdamW), the device synchronised at both
ends; both functions are wrapped here for the run. Reported: the median over
``--steps`` steps after ``--warmup`` steps, sequences/s = batch / median, tokens/s, and peak memory
``torch.cuda.max_memory_allocated`` (reset after the model and optimiser are built, so it includes the
weights, gradients, AdamW states and activations). Batch per length: ``--batch-sizes``, default 32 at
1,024 and 4 at 8,192 (32,768 tokens per step), else 32,768 // L capped to 1..32; on the CPU 1 and no
warm-up (the CPU run is a smoke check: the torch backend's autograd scan takes ~25 s a step on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from caduceus_cli.model.caduceus import CaduceusForMaskedLM  # noqa: E402
from caduceus_cli.model.config import CaduceusConfig  # noqa: E402
from caduceus_cli.model.heads import HeadConfig, SequenceHeadModel  # noqa: E402
from caduceus_cli.training import loop  # noqa: E402
from caduceus_cli.training.finetune import FinetuneTrainer, LabelledTokens, TrainConfig  # noqa: E402

TOKENS_PER_STEP = 32_768
DEFAULT_BATCH = {1_024: 32, 8_192: 4}


def batch_for(length: int, device: torch.device, given: dict[int, int]) -> int:
    if length in given:
        return given[length]
    if device.type != "cuda":
        return 1
    return DEFAULT_BATCH.get(length, max(1, min(32, TOKENS_PER_STEP // length)))


def synthetic(n: int, length: int, seed: int) -> LabelledTokens:
    """``n`` token arrays of ``length`` bp, GC fraction drawn per sequence in [0.3, 0.7]; label GC > 0.5."""
    rng = np.random.default_rng(seed)
    gc = rng.uniform(0.3, 0.7, n)
    p = np.stack([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2], 1)  # (n, 4): P(A), P(C), P(G), P(T)
    u = rng.random((n, length))
    bases = (u[:, :, None] > np.cumsum(p, 1)[:, None, :]).sum(-1)  # (n, L) in 0..3 = A, C, G, T
    ids = (bases + 7).astype(np.int64)  # token ids A=7, C=8, G=9, T=10
    return LabelledTokens(list(ids), (gc > 0.5).astype(np.int64))


class StepTimer:
    """Wraps ``loop.set_lr`` (a step's start) and ``loop.clip_and_step`` (its end), synchronising the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.grad_norms: list[float] = []

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @contextlib.contextmanager
    def patched(self):
        set_lr, clip_and_step = loop.set_lr, loop.clip_and_step

        def timed_set_lr(*a, **k):
            self.starts.append(self._now())
            return set_lr(*a, **k)

        def timed_clip_and_step(*a, **k):
            norm = clip_and_step(*a, **k)
            self.ends.append(self._now())
            self.grad_norms.append(norm)
            return norm

        loop.set_lr, loop.clip_and_step = timed_set_lr, timed_clip_and_step
        try:
            yield self
        finally:
            loop.set_lr, loop.clip_and_step = set_lr, clip_and_step

    def durations(self) -> list[float]:
        return [e - s for s, e in zip(self.starts, self.ends, strict=True)]


def run_length(args, device: torch.device, length: int, batch: int) -> dict:
    torch.manual_seed(args.seed)
    cfg = CaduceusConfig(d_model=args.d_model, n_layer=args.n_layer, rcps=True, max_seq_len=length)
    backbone = CaduceusForMaskedLM(cfg, backend=args.backend)
    model = SequenceHeadModel(backbone, HeadConfig(classes=("0", "1"), window=length))
    data = synthetic(max(64, 4 * batch), length, args.seed)
    total = args.warmup + args.steps
    row: dict = dict(length=length, batch=batch, tokens_per_step=batch * length)
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = TrainConfig(
            out_dir=tmp,
            steps=total,
            batch_size=batch,
            lr=1e-4,
            head_lr=1e-3,
            device=str(device),
            precision=args.precision,
            eval_every=total + 1,
            log_every=total + 1,
            seed=args.seed,
        )
        try:
            trainer = FinetuneTrainer(model, data, None, tcfg)
            row["bf16_autocast"] = trainer.bf16
            kernels = backbone.kernels(trainer.device)
            row["backend"] = f"{kernels.name}: {kernels.detail}"
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            timer = StepTimer(trainer.device)
            with timer.patched():
                outcome = trainer.train()
        except torch.cuda.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
            return row
        finally:
            if device.type == "cuda":
                row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    times = timer.durations()[args.warmup :]
    t = statistics.median(times)
    losses = [h["loss"] for h in outcome.history]
    row |= dict(
        steps_timed=len(times),
        warmup_steps=args.warmup,
        seconds_per_step=t,
        seconds_per_step_min=min(times),
        seconds_per_step_max=max(times),
        sequences_per_s=batch / t,
        tokens_per_s=batch * length / t,
        last_loss=losses[-1] if losses else None,
        params=sum(p.numel() for p in model.parameters()),
    )
    if device.type != "cuda":
        row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process, Linux KiB
    del trainer, model, backbone
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def parse_batches(text: str) -> dict[int, int]:
    out = {}
    for part in filter(None, text.split(",")):
        length, batch = part.split(":")
        out[int(length)] = int(batch)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--lengths", default="1024,8192", help="comma-separated sequence lengths")
    ap.add_argument("--batch-sizes", default="", help="LENGTH:BATCH,... (default 1024:32,8192:4; CPU 1)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per length")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 on GPU, 0 on CPU)")
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--backend", default="auto", help="kernel backend: auto | torch | cuda")
    ap.add_argument("--precision", default="auto", help="auto (bf16 autocast on GPU) | bf16 | fp32")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="JSON results (e.g. bench/results/finetune_h100.json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.steps < 1:
        ap.error("--steps must be 1 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.warmup is None:
        args.warmup = 3 if device.type == "cuda" else 0
    given = parse_batches(args.batch_sizes)
    lengths = [int(x) for x in args.lengths.split(",") if x]
    rows = []
    print(f"fine-tuning PS d{args.d_model} x {args.n_layer} + classification head on {device}")
    print(f"{'length':>7} {'batch':>5} {'s/step':>8} {'seq/s':>9} {'k tok/s':>9} {'peak GiB':>9}")
    for length in lengths:
        row = run_length(args, device, length, batch_for(length, device, given))
        rows.append(row)
        if "error" in row:
            print(f"{length:>7} {row['batch']:>5}  {row['error']}")
            continue
        peak = row.get("peak_gib")
        print(
            f"{length:>7} {row['batch']:>5} {row['seconds_per_step']:>8.4f} {row['sequences_per_s']:>9.3g} "
            f"{row['tokens_per_s'] / 1e3:>9.3g} {'-' if peak is None else format(peak, '.2f'):>9}"
        )
    result = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__,
        cuda=torch.version.cuda,
        threads=torch.get_num_threads(),
        model=dict(d_model=args.d_model, n_layer=args.n_layer, rcps=True, head="classification, 2 classes, mean"),
        loop="training.finetune.FinetuneTrainer; step = set_lr .. clip_and_step, device-synchronised",
        statistic=f"median of {args.steps} steps after {args.warmup} warm-up steps",
        results=rows,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
