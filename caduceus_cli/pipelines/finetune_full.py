"""finetune --method full: fine-tune a Caduceus model + RC-invariant head on labelled sequences.

Input: a table with ``sequence`` and label column(s), BED regions + labels with a reference, or a
FASTA with ``>NAME|LABEL[|SPLIT]`` records (``io.sequences``). Splits come from the input (a
``split`` column / field) or are drawn, stratified by class and seeded; an input with train and
test rows but no validation rows gets a validation set drawn from its training rows.

``-o DIR`` gets: ``metrics.json`` (top-level keys are the test split's: ``accuracy``, ``mcc``,
``auroc`` for classification; ``pearson``, ``spearman`` for regression; then ``validation``,
``test``, the best step and the counts), ``report.json`` (options, classes, history),
``predictions.tsv`` (test rows), ``model/`` (a model directory plus the head: ``load_model``
reads its backbone, ``load_finetuned`` the whole model), ``best/`` and ``checkpoints/``.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from caduceus_cli.choices import BackendChoice, HeadPool, Task, choice
from caduceus_cli.errors import OptionError, TableError
from caduceus_cli.inference.spec import MAX_WINDOW
from caduceus_cli.io.reference import read_rename_table
from caduceus_cli.io.sequences import SeqRecord, make_splits, read_sequences
from caduceus_cli.model.heads import HeadConfig, SequenceHeadModel, load_finetuned, save_finetuned
from caduceus_cli.model.loading import load_model
from caduceus_cli.tokenizer import encode
from caduceus_cli.training import loop
from caduceus_cli.training.finetune import FinetuneTrainer, LabelledTokens, TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FullFinetuneOptions:
    """What to learn (task, labels, pooling, window, splits) and how (``train``; its out_dir is ignored)."""

    task: Task | str = Task.CLASSIFICATION
    labels: tuple[str, ...] = ("label",)
    pool: HeadPool | str = HeadPool.MEAN
    window: int | None = None  # default: the longest training sequence
    val_frac: float = 0.1
    test_frac: float = 0.1
    conjoin_train: bool = False  # Ph: forward + RC pass in training too (always in evaluation)
    dropout: float = 0.0
    backend: BackendChoice | str = BackendChoice.AUTO
    bed: bool = False
    rename_chrs: str | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out_dir=""))


@dataclass(frozen=True)
class FinetuneResult:
    """What ``finetune_full`` measured and wrote; ``stopped``: SIGTERM before the end (rerun with resume)."""

    metrics: dict
    task: str
    outputs: list[str]
    n_train: int
    n_val: int
    n_test: int
    steps: int
    best_step: int
    stopped: bool
    early_stopped: bool
    model_dir: str | None
    files: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _class_order(values: list[str]) -> list[str]:
    try:
        return sorted(set(values), key=float)
    except ValueError:
        return sorted(set(values))


def _targets(records: list[SeqRecord], task: Task, labels: tuple[str, ...], where: str):
    """(y, classes, target names): class indices (N,) or float targets (N, T)."""
    if task == Task.CLASSIFICATION:
        if any(len(r.label) != 1 for r in records):
            raise TableError(f"{where}: classification takes one label column; several are for --task regression")
        classes = _class_order([r.label[0] for r in records])
        if len(classes) < 2:
            raise TableError(f"{where}: only one class ({classes[0]}); classification needs two or more")
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[r.label[0]] for r in records], np.int64), classes, []
    k = len(records[0].label)
    y = np.zeros((len(records), k), np.float32)
    for i, r in enumerate(records):
        if len(r.label) != k:
            raise TableError(f"{where}: {r.name}: {len(r.label)} targets, expected {k}")
        try:
            y[i] = [float(x) for x in r.label]
        except ValueError as exc:
            raise TableError(f"{where}: {r.name}: target {r.label} is not a number") from exc
    if not np.isfinite(y).all():
        raise TableError(f"{where}: a regression target is NaN or infinite")
    names = list(labels) if len(labels) == k else [f"target{t}" for t in range(k)]
    return y, [], names


def _splits(records: list[SeqRecord], strata, opts: FullFinetuneOptions, where: str) -> np.ndarray:
    given = [r.split for r in records]
    seed = opts.train.seed
    if all(s is None for s in given):
        return np.array(make_splits(strata, opts.val_frac, opts.test_frac, seed))
    if any(s is None for s in given):
        raise TableError(f"{where}: some rows have a split and some do not; give every row one, or none")
    split = np.array(given, dtype=object)
    if "train" not in given:
        raise TableError(f"{where}: no row has split 'train'")
    if "validation" not in given and opts.val_frac > 0:
        train = np.flatnonzero(split == "train")
        inner = make_splits([strata[i] for i in train], opts.val_frac, 0.0, seed)
        split[train] = inner
        log.info("no validation rows: %d training rows drawn for validation", inner.count("validation"))
    return split


def finetune_full(
    input_path: str,
    out_dir: str,
    model: str | None = None,
    ref: str | None = None,
    opts: FullFinetuneOptions = FullFinetuneOptions(),
) -> FinetuneResult:
    """Run ``finetune --method full``; returns the result (metrics also in ``out_dir/metrics.json``)."""
    task = choice(Task, opts.task, "--task")
    pool = choice(HeadPool, opts.pool, "--pool")
    backend = choice(BackendChoice, opts.backend, "--backend")
    if opts.window is not None and not 1 <= opts.window <= MAX_WINDOW:
        raise OptionError(f"--window {opts.window}: must be between 1 and {MAX_WINDOW}")
    if opts.train.batch_size < 1 or opts.train.accumulate < 1:
        raise OptionError("--batch-size and --accumulate must be 1 or more")
    renames = read_rename_table(opts.rename_chrs) if opts.rename_chrs else None
    labels = tuple(opts.labels)
    records = read_sequences(input_path, ref, labels, need_label=True, bed=opts.bed, renames=renames)
    y, classes, targets = _targets(records, task, labels, input_path)
    strata = y.tolist() if task == Task.CLASSIFICATION else [0] * len(y)
    split = _splits(records, strata, opts, input_path)
    ids = [encode(r.seq) for r in records]
    parts = {s: np.flatnonzero(split == s) for s in ("train", "validation", "test")}
    if len(parts["train"]) == 0:
        raise TableError(f"{input_path}: no training rows")
    mean, std = (), ()
    if task == Task.REGRESSION:  # standardise with the training rows' statistics
        m, s = y[parts["train"]].mean(0), y[parts["train"]].std(0)
        s = np.where(s > 0, s, 1.0)
        mean, std = tuple(float(x) for x in m), tuple(float(x) for x in s)
        y = ((y - m) / s).astype(np.float32)
    window = opts.window or max(len(ids[i]) for i in parts["train"])
    torch.manual_seed(opts.train.seed)
    backbone = load_model(model, backend=backend.value)
    backbone.config = backbone.config.with_(max_seq_len=window)  # embed's default window: the training length
    head = HeadConfig(
        task=task.value,
        classes=tuple(classes) if classes else ("0", "1"),
        targets=tuple(targets),
        pool=pool.value,
        conjoin_train=opts.conjoin_train,
        dropout=opts.dropout,
        target_mean=mean,
        target_std=std,
        window=window,
        info={"base_model": getattr(backbone, "source", str(model)), "input": str(input_path)},
    )
    net = SequenceHeadModel(backbone, head)

    def subset(name: str) -> LabelledTokens | None:
        idx = parts[name]
        return LabelledTokens([ids[i] for i in idx], y[idx]) if len(idx) else None

    out = Path(out_dir)
    tcfg = TrainConfig(**{**asdict(opts.train), "out_dir": str(out)})
    log.info(
        "fine-tuning %s (%s) on %d train / %d validation / %d test sequences, window %d",
        "PS" if backbone.config.rcps else "Ph",
        task.value,
        *(len(parts[s]) for s in ("train", "validation", "test")),
        window,
    )
    trainer = FinetuneTrainer(net, subset("train"), subset("validation"), tcfg)
    outcome = trainer.train()
    if dist.is_initialized():  # torchrun: rank 0 alone evaluates the best model and writes the results
        dist.destroy_process_group()
    counts = {s: int(len(parts[s])) for s in ("train", "validation", "test")}
    outputs = head.output_names
    if outcome.stopped or trainer.rank != 0:
        return FinetuneResult(
            {},
            task.value,
            outputs,
            *counts.values(),
            outcome.step,
            outcome.best_step,
            outcome.stopped,
            outcome.early_stopped,
            None,
            [],
        )
    best = load_finetuned(out / "best", device=trainer.device, backend=backend.value)
    trainer.model = best
    val_m = trainer.evaluate(subset("validation"))
    test = subset("test")
    test_m = trainer.evaluate(test)
    save_finetuned(best, out / "model")
    keys = ("accuracy", "mcc", "auroc") if task == Task.CLASSIFICATION else ("pearson", "spearman")
    metrics = {k: test_m.get(k) for k in keys}
    metrics |= {
        "task": task.value,
        "test": test_m,
        "validation": val_m,
        "n": counts,
        "best_step": outcome.best_step,
        "steps": outcome.step,
        "early_stopped": outcome.early_stopped,
        "validation_metric": trainer.metric,
    }
    if test is not None:
        _write_predictions(out / "predictions.tsv", records, parts["test"], trainer.predict(test), head, y)
    report = {
        "metrics": metrics,
        "head": head.to_dict(),
        "options": _jsonable(asdict(opts)),
        "history": outcome.history,
        "model": str(model) if model is not None else None,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if loop.latest_checkpoint(out) is None:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return FinetuneResult(
        metrics,
        task.value,
        outputs,
        *counts.values(),
        outcome.step,
        outcome.best_step,
        False,
        outcome.early_stopped,
        str(out / "model"),
        sorted(p.name for p in out.iterdir()),
    )


def _write_predictions(path: Path, records, rows, pred: np.ndarray, head: HeadConfig, y: np.ndarray) -> None:
    if head.task == "regression":
        pred = pred * np.array(head.target_std) + np.array(head.target_mean)
        truth = [[f"{float(v):.6g}" for v in records[i].label] for i in rows]
        label_cols = [f"label_{t}" for t in head.targets]
    else:
        truth = [[records[i].label[0]] for i in rows]
        label_cols = ["label"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["name", *label_cols, *head.output_names])
        for i, t, p in zip(rows, truth, pred, strict=True):
            w.writerow([records[i].name, *t, *(f"{v:.6g}" for v in p)])


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, tuple | list):
        return [_jsonable(v) for v in d]
    return d
