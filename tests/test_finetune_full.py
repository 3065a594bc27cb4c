"""finetune --method full and predict on real sequence, CPU only: human chr20 windows vs E. coli windows.

Tiny random backbones (d_model 32, 2 layers; 16 x 1 for the resume test) learn the task in ~10 steps;
the PS and Ph heads are RC-invariant; a SIGTERM-stopped run resumed gives the uninterrupted result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest
import torch

from caduceus_cli.choices import Task
from caduceus_cli.errors import TableError
from caduceus_cli.io.sequences import make_splits, read_sequences
from caduceus_cli.model.caduceus import CaduceusForMaskedLM
from caduceus_cli.model.config import CaduceusConfig
from caduceus_cli.model.heads import HeadConfig, SequenceHeadModel, head_outputs, load_finetuned
from caduceus_cli.model.loading import load_model, save_model
from caduceus_cli.pipelines.finetune_full import FullFinetuneOptions, finetune_full
from caduceus_cli.pipelines.predict import predict
from caduceus_cli.tokenizer import encode, reverse_complement_ids
from caduceus_cli.training import loop
from caduceus_cli.training.finetune import TrainConfig
from tests.conftest import DATA

COMP = str.maketrans("ACGTN", "TGCAN")
ECOLI = "K-12-MG1655"


def rc(seq: str) -> str:
    return seq.translate(COMP)[::-1]


def windows(fasta: str, contig: str, n: int, length: int, skip: int = 0) -> list[str]:
    """``n`` N-free windows of ``length`` bp, every third one, after ``skip`` of them."""
    with pysam.FastaFile(str(DATA / fasta)) as fa:
        seq = fa.fetch(contig).upper()
    out, i = [], 0
    while len(out) < n + skip and i + length <= len(seq):
        w = seq[i : i + length]
        if "N" in w:
            i += length
            continue
        out.append(w)
        i += 3 * length
    return out[skip:]


def write_table(path: Path, n: int, length: int, skip: int = 0) -> Path:
    human = windows("chr20_slices.fa.gz", "20", n, length, skip)
    ecoli = windows("ecoli_slice.fa.gz", ECOLI, n, length, skip)
    with open(path, "w") as fh:
        fh.write("name\tsequence\tlabel\n")
        for i, (h, e) in enumerate(zip(human, ecoli, strict=True)):
            fh.write(f"human{i}\t{h}\thuman\necoli{i}\t{e}\tecoli\n")
    return path


def base_model(folder: Path, rcps: bool, d_model: int = 32, n_layer: int = 2) -> Path:
    torch.manual_seed(0)
    return save_model(CaduceusForMaskedLM(CaduceusConfig(d_model=d_model, n_layer=n_layer, rcps=rcps)), folder)


def options(**train) -> FullFinetuneOptions:
    base = dict(out_dir="", batch_size=8, lr=3e-3, head_lr=3e-3, device="cpu", log_every=1)
    return FullFinetuneOptions(val_frac=0.15, test_frac=0.25, train=TrainConfig(**(base | train)))


def rc_fasta(path: Path, seqs: list[str]) -> Path:
    with open(path, "w") as fh:
        for i, s in enumerate(seqs):
            fh.write(f">s{i}\n{s}\n>s{i}_rc\n{rc(s)}\n")
    return path


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = [x.split("\t") for x in path.read_text().splitlines()]
    return lines[0], lines[1:]


@pytest.fixture(scope="module")
def ps_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ps")
    table = write_table(tmp / "human_vs_ecoli.tsv", 30, 128)
    result = finetune_full(
        str(table), str(tmp / "run"), str(base_model(tmp / "base", True, n_layer=1)), opts=options(steps=8)
    )
    return tmp, result


def test_ps_learns_human_vs_ecoli(ps_run):
    tmp, r = ps_run
    m = json.loads((tmp / "run" / "metrics.json").read_text())
    assert m["accuracy"] >= 0.75 and m["auroc"] >= 0.85, m  # chance is 0.5
    assert {"accuracy", "mcc", "auroc", "test", "validation"} <= set(m) and m["test"]["n"] == r.n_test == 16
    assert r.outputs == ["prob_ecoli", "prob_human"] and not r.stopped
    header, rows = read_tsv(tmp / "run" / "predictions.tsv")
    assert header == ["name", "label", "prob_ecoli", "prob_human"] and len(rows) == 16
    backbone = load_model(tmp / "run" / "model")  # a plain model directory too: embed --model DIR/model works
    assert backbone.config.d_model == 32 and backbone.config.max_seq_len == 128
    assert load_finetuned(tmp / "run" / "model").head_config.classes == ("ecoli", "human")


def test_ps_predictions_are_rc_invariant(ps_run, tmp_path):
    tmp, _ = ps_run
    seqs = windows("chr20_slices.fa.gz", "20", 3, 128, skip=40) + windows("ecoli_slice.fa.gz", ECOLI, 3, 160, skip=40)
    out = predict(str(tmp / "run" / "model"), str(rc_fasta(tmp_path / "q.fa", seqs)), str(tmp_path / "p.tsv"))
    header, rows = read_tsv(tmp_path / "p.tsv")
    assert out.rows == 12 and header == ["name", "prob_ecoli", "prob_human"]
    vals = np.array([[float(x) for x in r[1:]] for r in rows])
    np.testing.assert_allclose(vals[0::2], vals[1::2], atol=2e-6)  # PS: equal up to float32 rounding
    assert (vals[0:6:2, 0] < 0.5).sum() + (vals[6::2, 0] > 0.5).sum() >= 4  # P(ecoli): still sensible
    from caduceus_cli.pipelines.embed import embed

    e = embed(str(tmp_path / "q.fa"), str(tmp_path / "e.parquet"), str(tmp / "run" / "model"))
    assert e.rows == 12 and e.dim == 32


def test_ph_predictions_identical_for_a_sequence_and_its_rc(tmp_path):
    table = write_table(tmp_path / "t.tsv", 12, 96)
    r = finetune_full(
        str(table), str(tmp_path / "run"), str(base_model(tmp_path / "base", False)), opts=options(steps=3)
    )
    assert r.model_dir and not load_model(r.model_dir).config.rcps
    seqs = windows("ecoli_slice.fa.gz", ECOLI, 3, 96, skip=30) + windows("chr20_slices.fa.gz", "20", 2, 101, skip=30)
    predict(r.model_dir, str(rc_fasta(tmp_path / "q.fa", seqs)), str(tmp_path / "p.tsv"))
    _, rows = read_tsv(tmp_path / "p.tsv")
    vals = np.array([[float(x) for x in r[1:]] for r in rows])
    # Ph conjoins the strands: equal up to the float32 rounding of the CPU path's batched GEMMs (a printed
    # 6-digit probability can flip its last digit); the raw head outputs below are compared bit for bit
    np.testing.assert_allclose(vals[0::2], vals[1::2], atol=2e-6)
    model = load_finetuned(r.model_dir)
    ids = torch.from_numpy(np.stack([encode(s) for s in seqs[:3]]))
    a, b = head_outputs(model, ids, raw=True), head_outputs(model, reverse_complement_ids(ids), raw=True)
    assert np.array_equal(a, b)


def test_resume_continues_to_the_same_result(tmp_path, monkeypatch):
    table = write_table(tmp_path / "t.tsv", 10, 64)
    base = str(base_model(tmp_path / "base", True, d_model=16, n_layer=1))
    opts = options(steps=6, eval_every=2, batch_size=4)
    full = finetune_full(str(table), str(tmp_path / "full"), base, opts=opts)
    real = loop.set_lr

    def stop_at_3(opt, step, *a):
        if step == 3:
            loop.StopFlag.requested = True  # as the SIGTERM handler does
        return real(opt, step, *a)

    monkeypatch.setattr(loop, "set_lr", stop_at_3)
    part = finetune_full(str(table), str(tmp_path / "part"), base, opts=opts)
    loop.StopFlag.requested = False
    monkeypatch.setattr(loop, "set_lr", real)
    assert part.stopped and part.steps == 4 and part.model_dir is None
    assert loop.latest_checkpoint(tmp_path / "part").name == "step-0000004"
    resumed = finetune_full(
        str(table), str(tmp_path / "part"), base, opts=options(steps=6, eval_every=2, batch_size=4, resume=True)
    )
    assert resumed.steps == 6 and resumed.best_step == full.best_step
    assert resumed.metrics["test"] == full.metrics["test"]
    a, b = load_finetuned(full.model_dir).state_dict(), load_finetuned(resumed.model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_inputs_fasta_bed_and_splits(tmp_path):
    fa = tmp_path / "l.fa"
    fa.write_text(">a|1|train\nACGT\n>b|0|test\nGGCC\n>c|2.5,1|val\nAAAA\n")
    recs = read_sequences(str(fa))
    assert [(r.name, r.label, r.split) for r in recs] == [
        ("a", ("1",), "train"),
        ("b", ("0",), "test"),
        ("c", ("2.5", "1"), "validation"),
    ]
    with pytest.raises(TableError, match="no label in the record name"):
        (tmp_path / "u.fa").write_text(">x\nACGT\n")
        read_sequences(str(tmp_path / "u.fa"))
    bed = tmp_path / "r.bed"
    bed.write_text("chr22\t20000100\t20000164\tp1\t1\ttrain\n22\t20000200\t20000264\t.\t0\ttest\n")
    recs = read_sequences(str(bed), ref=str(DATA / "chr22_slice.fa.gz"))
    with pysam.FastaFile(str(DATA / "chr22_slice.fa.gz")) as ref:
        assert recs[0].seq == ref.fetch("22", 20000100, 20000164).upper() and len(recs[1].seq) == 64
    assert recs[0].name == "p1" and recs[1].name == "22:20000201-20000264" and recs[1].split == "test"
    splits = make_splits([0] * 50 + [1] * 50, 0.1, 0.2, seed=3)
    assert splits == make_splits([0] * 50 + [1] * 50, 0.1, 0.2, seed=3)  # seeded
    for cls in (slice(0, 50), slice(50, 100)):  # stratified
        part = splits[cls]
        assert (part.count("test"), part.count("validation")) == (10, 5)


def test_heads_rc_invariant_and_regression_targets():
    for rcps in (True, False):
        torch.manual_seed(1)
        lm = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=1, rcps=rcps), backend="torch")
        head = HeadConfig(
            task="regression", targets=("a", "b"), pool="max", target_mean=(1.0, 2.0), target_std=(2.0, 1.0)
        )
        model = SequenceHeadModel(lm, head).eval()
        ids = torch.randint(7, 11, (3, 50))
        a, b = head_outputs(model, ids), head_outputs(model, reverse_complement_ids(ids))
        assert a.shape == (3, 2)
        np.testing.assert_allclose(a, b, atol=1e-6)
        raw = head_outputs(model, ids, raw=True)
        np.testing.assert_allclose(a, raw * np.array([2.0, 1.0]) + np.array([1.0, 2.0]), rtol=1e-5)
    conjoined = SequenceHeadModel(lm, HeadConfig(conjoin_train=True)).train()  # Ph: both passes in training too
    with torch.no_grad():
        assert torch.equal(conjoined(ids), conjoined(reverse_complement_ids(ids)))


def test_cli_regression_finetune_and_predict(tmp_path):
    seqs = windows("chr20_slices.fa.gz", "20", 14, 64) + windows("ecoli_slice.fa.gz", ECOLI, 14, 64)
    table = tmp_path / "gc.csv"
    with open(table, "w") as fh:
        fh.write("name,sequence,gc,split\n")
        for i, s in enumerate(seqs):
            fh.write(f"w{i},{s},{(s.count('G') + s.count('C')) / len(s):.4f},{('train', 'train', 'test')[i % 3]}\n")
    base = base_model(tmp_path / "base", True, d_model=16, n_layer=1)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "caduceus_cli", "finetune", "--method", "full", str(table), "--model", str(base)]
    cmd += ["-o", str(run), "--task", Task.REGRESSION.value, "--labels", "gc", "--steps", "2", "-b", "8"]
    p = subprocess.run(cmd + ["--device", "cpu"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads((run / "metrics.json").read_text())
    assert {"pearson", "spearman"} <= set(m) and m["n"]["test"] == 9 and m["n"]["validation"] >= 1
    assert "fine-tuned regression model" in p.stderr
    q = rc_fasta(tmp_path / "q.fa", seqs[:2])
    p = subprocess.run(
        [sys.executable, "-m", "caduceus_cli", "predict", str(run / "model"), str(q), "-o", str(tmp_path / "o.tsv")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    header, rows = read_tsv(tmp_path / "o.tsv")
    assert header == ["name", "gc"] and [r[0] for r in rows] == ["s0", "s0_rc", "s1", "s1_rc"]
    assert abs(float(rows[0][1]) - float(rows[1][1])) < 1e-5


@pytest.mark.slow
def test_distributed_gloo_two_processes(tmp_path):
    import os

    table = write_table(tmp_path / "t.tsv", 8, 64)
    base = base_model(tmp_path / "base", True, d_model=16, n_layer=1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29534"]
    cmd += ["-m", "caduceus_cli", "finetune", "--method", "full", str(table), "--model", str(base)]
    cmd += ["-o", str(tmp_path / "ddp"), "--steps", "3", "-b", "2", "--device", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m["steps"] == 3 and m["test"]["n"] == 2
    assert load_finetuned(tmp_path / "ddp" / "model").head_config.classes == ("ecoli", "human")


def test_frozen_backbone_and_early_stopping(tmp_path):
    table = write_table(tmp_path / "t.tsv", 6, 64)
    base = base_model(tmp_path / "base", True, d_model=16, n_layer=1)
    opts = options(steps=6, eval_every=1, patience=1, head_lr=0.0, freeze_backbone=True, batch_size=4)
    r = finetune_full(str(table), str(tmp_path / "run"), str(base), opts=opts)
    assert r.early_stopped and r.steps == 2 and r.best_step == 1  # nothing can improve at lr 0
    a, b = load_model(base).state_dict(), load_model(r.model_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the backbone did not move


def test_score_vcf_adds_cad_delta_in_both_window_modes(ps_run, tmp_path):
    import math

    import pysam

    from caduceus_cli.errors import OptionError
    from caduceus_cli.pipelines.score_vcf import ScoreOptions, score_vcf

    tmp, _ = ps_run
    ex = Path(__file__).resolve().parents[1] / "examples"
    vcf, ref, model = str(ex / "chr22_example.vcf.gz"), str(ex / "chr22_slice.fa.gz"), str(tmp / "run" / "model")
    deltas = {}
    for mode in ("centred", "shared"):
        out = tmp_path / f"{mode}.vcf"
        summary = score_vcf(vcf, ref, str(out), model, ScoreOptions(windows=mode, device="cpu", batch_size=16))
        with pysam.VariantFile(str(out)) as vf:
            info = vf.header.info["CAD_DELTA"]
            assert info.number == "A" and info.type == "Float" and "log-odds" in info.description
            recs = list(vf)
        assert len(recs) == summary.records == 50
        scored = [(r.pos, i) for r in recs for i in range(len(r.alts)) if r.info.get("CAD_COS", (None,))[i] is not None]
        assert len(scored) == summary.scored > 40
        by_pos = {r.pos: r for r in recs}
        assert all(math.isfinite(by_pos[p].info["CAD_DELTA"][i]) for p, i in scored)  # every scored ALT
        deltas[mode] = np.array([by_pos[p].info["CAD_DELTA"][i] for p, i in scored])
        assert np.abs(deltas[mode]).max() > 0
    # the score window is the head's 128 bp: centred, the allele in its middle; shared, anywhere in the tile's core
    assert np.corrcoef(deltas["centred"], deltas["shared"])[0, 1] > 0.9
    with pytest.raises(OptionError, match="no fine-tuned head"):
        score_vcf(vcf, ref, str(tmp_path / "x.vcf"), str(tmp / "base"), ScoreOptions(scores=("delta",), device="cpu"))
