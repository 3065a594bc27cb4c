"""Pretraining on a small real slice (chr22 of GRCh37), CPU only."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from caduceus_cli import load_model
from caduceus_cli.tokenizer import MASK, PAD, N, encode
from caduceus_cli.training import pretrain as pt
from caduceus_cli.training.baseline import kmer_counts, kmer_cross_entropy
from caduceus_cli.training.masking import IGNORE, mask_tokens
from caduceus_cli.training.optim import warmup_cosine
from tests.conftest import DATA

FA = str(DATA / "chr22_slice.fa.gz")


def cfg(out, **kw):
    base = dict(
        fasta=(FA,),
        out_dir=str(out),
        seq_len=128,
        d_model=16,
        n_layer=1,
        steps=6,
        batch_size=4,
        lr=5e-3,
        eval_every=1000,
        save_every=1000,
        log_every=1,
        device="cpu",
        max_n_frac=0.05,
    )
    base.update(kw)
    return pt.PretrainConfig(**base)


def metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_masking_recipe():
    ids = torch.from_numpy(np.tile(encode("ACGTN" * 400), (8, 1)))
    inputs, labels = mask_tokens(ids, torch.Generator().manual_seed(0))
    chosen = labels != IGNORE
    assert not (labels[chosen] == N).any() and not (labels[chosen] == PAD).any()  # N never a target
    frac = chosen.float().sum() / (ids != N).sum()
    assert 0.13 < frac < 0.17
    masked = (inputs[chosen] == MASK).float().mean()
    assert 0.75 < masked < 0.85
    assert (inputs[ids == N] == PAD).all()


def test_schedule():
    assert warmup_cosine(0, 100, 0.1, 8e-3, 1e-4) == pytest.approx(8e-4)
    assert warmup_cosine(9, 100, 0.1, 8e-3, 1e-4) == pytest.approx(8e-3)
    assert warmup_cosine(99, 100, 0.1, 8e-3, 1e-4) == pytest.approx(1e-4, rel=0.05)


def test_loss_goes_down_and_checkpoint_loads(tmp_path):
    out = tmp_path / "run"
    pt.pretrain(cfg(out, steps=40, d_model=32, batch_size=8, lr=8e-3, val_contigs=(), eval_every=40, eval_chunks=8))
    m = metrics(out)
    first = np.mean([x["loss"] for x in m[:5]])
    last = np.mean([x["loss"] for x in m[-5:]])
    assert last < first - 0.05, (first, last)
    model = load_model(out / "model")
    assert model.config.max_seq_len == 128 and model.config.rcps
    assert load_model(pt.latest_checkpoint(out)).config.d_model == 32


def test_resume_continues_exactly(tmp_path, monkeypatch):
    full = tmp_path / "full"
    pt.pretrain(cfg(full))
    part = tmp_path / "part"
    real = pt.warmup_cosine

    def stop_at_3(step, *a):
        if step == 3:
            pt._Stop.requested = True  # as the SIGTERM handler does
        return real(step, *a)

    monkeypatch.setattr(pt, "warmup_cosine", stop_at_3)
    result = pt.pretrain(cfg(part))
    pt._Stop.requested = False
    monkeypatch.setattr(pt, "warmup_cosine", real)
    assert result.stopped and result.step == 4 and result.model_dir is None
    pt.pretrain(cfg(part, resume=True))
    a = {x["step"]: x["loss"] for x in metrics(full)}
    b = {x["step"]: x["loss"] for x in metrics(part)}
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    for s in (5, 6):
        assert b[s] == pytest.approx(a[s], rel=1e-6, abs=1e-7)


def test_phase_ph_with_rc_augmentation(tmp_path):
    out = tmp_path / "ph"
    pt.pretrain(cfg(out, rcps=False, steps=3))
    assert not load_model(out / "model").config.rcps


@pytest.mark.slow
def test_distributed_gloo_two_processes(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
        "-m",
        "caduceus_cli",
        "pretrain",
        FA,
        "-o",
        str(out),
        "--seq-len",
        "128",
        "--d-model",
        "16",
        "--n-layer",
        "1",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--eval-every",
        "1000",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    assert summary["tokens"] == 3 * 2 * 2 * 128  # steps x ranks x batch x length
    assert load_model(out / "model").config.d_model == 16


def test_kmer_baseline_learns_context():
    periodic = encode("ACGGTCA" * 500).astype(np.uint8)
    counts = kmer_counts([periodic])
    assert kmer_cross_entropy(counts, [periodic]) < 0.05  # deterministic given context
    rng = np.random.default_rng(0)
    noise = (rng.integers(0, 4, 20000) + 7).astype(np.uint8)
    assert kmer_cross_entropy(kmer_counts([noise]), [noise[::-1].copy()]) > 1.3  # ~log 4 for random DNA
