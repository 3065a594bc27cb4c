"""finetune --method probe: embed labelled variants, fit the probe, evaluate on held-out data, report.

Splits: ``chrom`` trains on every chromosome but ``test_chroms`` (default 9 and 10,
the paper's) and tests on those; ``cv`` gives every row an out-of-fold score from
grouped K-fold cross-validation, grouped by chromosome when there are at least K
of them and otherwise by K contiguous genomic blocks (so neighbouring variants,
whose windows overlap, stay on one side), then fits the saved probe on all rows.

Rows whose window has >= 0.5% N are dropped before fitting (the paper's rule).

``-o DIR`` gets: metrics.json (``auroc``, ``auprc`` over the whole test set, CIs,
``buckets``), report.json (metrics, per-seed AUROC, chosen C, options, feature
spec), probe.joblib (for ``score-vcf --probe``), roc.png, predictions.tsv, and
embeddings.parquet when the input was a table (reusable as input).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from caduceus_cli.choices import FinetuneMethod, Split, choice
from caduceus_cli.errors import InputFileError, OptionError, ProbeError, TableError
from caduceus_cli.inference.runtime import Runtime
from caduceus_cli.inference.spec import variant_spec
from caduceus_cli.io.embeddings import ParquetSink, is_embedding_file
from caduceus_cli.pipelines.embed import EmbedOptions, embed_table, load_table, read_embeddings
from caduceus_cli.probe.evaluation import evaluate, plot_roc
from caduceus_cli.probe.model import ProbeOptions, fit_probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneOptions:
    method: FinetuneMethod | str = FinetuneMethod.PROBE
    split: Split | str = Split.CHROM
    test_chroms: tuple[str, ...] = ("9", "10")
    folds: int = 5
    bootstrap: int = 1000
    probe: ProbeOptions = field(default_factory=ProbeOptions)


@dataclass(frozen=True)
class ProbeReport:
    """What ``finetune_probe`` measured and wrote (``to_dict`` is report.json)."""

    metrics: dict
    n_rows: int
    n_dropped: int
    n_test: int
    chosen_c: list[float]
    options: dict
    embedding: dict
    probe: str
    files: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def _norm_chrom(c: str) -> str:
    return str(c).removeprefix("chr")


def finetune_probe(
    input_path: str,
    out_dir: str,
    model: str | None = None,
    ref: str | None = None,
    embed_opts: EmbedOptions = EmbedOptions(),
    opts: FinetuneOptions = FinetuneOptions(),
    progress: Callable[[int], None] | None = None,
) -> ProbeReport:
    """Run ``finetune --method probe``; returns the report (also written to ``out_dir``)."""
    method = choice(FinetuneMethod, opts.method, "--method")
    split = choice(Split, opts.split, "--split")
    if method != FinetuneMethod.PROBE:
        raise OptionError(
            f"--method {method}: finetune_probe fits probes on frozen embeddings; for full fine-tuning call "
            "caduceus_cli.pipelines.finetune_full.finetune_full (the CLI dispatches --method full there)"
        )
    if not Path(input_path).exists():
        raise InputFileError(f"{input_path}: no such labelled table or embeddings file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols, X, spec = _features(input_path, out, model, ref, embed_opts, progress)
    if "label" not in cols:
        raise TableError(
            f"{input_path}: no label column; embed a labelled table (columns chromosome, position, ref, alt, label)"
        )
    keep = ~np.isnan(X).any(axis=1) & np.array(["N_IN_WINDOW" not in (f or "") for f in cols["flag"]])
    dropped = int((~keep).sum())
    if dropped:
        log.warning("%d of %d variants dropped (window >= 0.5%% N, or not embedded)", dropped, len(keep))
    rows = np.flatnonzero(keep)
    y = np.array([cols["label"][i] for i in rows], np.int64)
    X = X[rows]
    chroms = np.array([_norm_chrom(cols["chrom"][i]) for i in rows])
    tissue = [cols["tissue"][i] for i in rows] if "tissue" in cols and opts.probe.use_tissue else None
    dist = (
        np.array(
            [
                np.nan if cols["distance_to_nearest_tss"][i] is None else cols["distance_to_nearest_tss"][i]
                for i in rows
            ],
            np.float64,
        )
        if "distance_to_nearest_tss" in cols
        else None
    )
    if split == Split.CHROM:
        test = np.isin(chroms, [_norm_chrom(c) for c in opts.test_chroms])
        if not test.any() or test.all():
            have = ", ".join(sorted(set(chroms.tolist())))
            raise ProbeError(
                f"{input_path}: --test-chroms {','.join(opts.test_chroms)} leaves "
                f"{'no test' if not test.any() else 'no training'} rows (chromosomes present: {have}); "
                "pick other --test-chroms or use --split cv"
            )
        probe = fit_probe(X[~test], y[~test], chroms[~test], spec, opts.probe, _sub(tissue, ~test))
        score = probe.decision(X[test], _sub(tissue, test))
        per_seed = [_auroc(y[test], d) for d in probe.decision_per_seed(X[test], _sub(tissue, test))]
        test_idx = np.flatnonzero(test)
    else:
        score, per_seed = _cross_validate(X, y, chroms, [cols["pos"][i] for i in rows], tissue, spec, opts)
        probe = fit_probe(X, y, chroms, spec, opts.probe, tissue)
        test_idx = np.arange(len(y))
    yt = y[test_idx]
    dt = dist[test_idx] if dist is not None else None
    metrics = evaluate(yt, score, dt, opts.bootstrap)
    metrics["per_seed_auroc" if split == Split.CHROM else "per_fold_auroc"] = per_seed
    probe.info |= {"table": str(input_path), "split": split.value, "test_chroms": list(opts.test_chroms)}
    probe.save(out / "probe.joblib")
    plot_roc(yt, score, dt, str(out / "roc.png"), f"{spec.model.split('/')[-1]} probe ({split.value} split)")
    _write_predictions(out / "predictions.tsv", cols, rows[test_idx], yt, score)
    report = ProbeReport(
        metrics,
        len(keep),
        dropped,
        int(len(yt)),
        probe.chosen_c,
        _jsonable(asdict(opts)),
        spec.to_dict(),
        str(out / "probe.joblib"),
        sorted(p.name for p in out.iterdir()),
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _features(input_path: str, out: Path, model, ref, embed_opts: EmbedOptions, progress):
    if is_embedding_file(input_path):
        cols, X, spec = read_embeddings(input_path)
        if spec.kind != "variant":
            raise ProbeError(f"{input_path}: holds {spec.kind} embeddings; the probe needs variant embeddings")
        return cols, X, spec
    table = load_table(input_path, embed_opts, need_label=True)
    with Runtime(model, embed_opts, ref) as rt:
        spec = variant_spec(rt.model, rt.model_sha256, embed_opts)
        rows = embed_table(rt, table, spec, embed_opts, progress)
    sink = ParquetSink(str(out / "embeddings.parquet"), spec.to_dict())
    sink.write(rows)
    sink.close(True)
    return rows.columns, rows.embedding, spec


def _cross_validate(X, y, chroms, positions, tissue, spec, opts: FinetuneOptions):
    from sklearn.model_selection import GroupKFold

    k = opts.folds
    if len(set(chroms.tolist())) >= k:
        groups = chroms
        log.info("cross-validation: %d folds grouped by chromosome", k)
    else:
        order = np.lexsort((np.asarray(positions), chroms))  # genomic order
        groups = np.empty(len(y), np.int64)
        groups[order] = np.arange(len(y)) * k // len(y)  # k contiguous blocks
        log.info("cross-validation: %d folds of contiguous genomic blocks (fewer than %d chromosomes)", k, k)
    score = np.zeros(len(y))
    per_fold = []
    for train, test in GroupKFold(n_splits=k).split(X, y, groups):
        probe = fit_probe(X[train], y[train], groups[train], spec, opts.probe, _sub(tissue, train))
        score[test] = probe.decision(X[test], _sub(tissue, test))
        per_fold.append(_auroc(y[test], score[test]))
    return score, per_fold


def _sub(values: list | None, idx) -> list | None:
    if values is None:
        return None
    sel = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx)
    return [values[i] for i in sel]


def _auroc(y, s) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(set(np.asarray(y).tolist())) == 2 else None


def _write_predictions(path: Path, cols: dict, rows: np.ndarray, y: np.ndarray, score: np.ndarray) -> None:
    keys = [k for k in ("chrom", "pos", "ref", "alt", "tissue", "distance_to_nearest_tss") if k in cols]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(keys + ["label", "score"])
        for r, label, s in zip(rows, y, score, strict=True):
            w.writerow([cols[k][r] for k in keys] + [int(label), f"{s:.6g}"])


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, tuple | list):
        return [_jsonable(v) for v in d]
    return d
