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

from caduceus_cli.embed_io import META_KEY, ParquetSink, read_embeddings
from caduceus_cli.embedding import EmbeddedRows, Embedder, EmbedOptions, load_table
from caduceus_cli.errors import InputFileError, OptionError, ProbeError
from caduceus_cli.evaluation import evaluate, plot_roc
from caduceus_cli.probe import ProbeOptions, fit_probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneOptions:
    method: str = "probe"
    split: str = "chrom"  # chrom | cv
    test_chroms: tuple[str, ...] = ("9", "10")
    folds: int = 5
    bootstrap: int = 1000
    probe: ProbeOptions = field(default_factory=ProbeOptions)


def is_embedding_file(path: str) -> bool:
    if not path.lower().endswith((".parquet", ".pq")):
        return False
    import pyarrow.parquet as pq

    try:
        return META_KEY in (pq.read_schema(path).metadata or {})
    except OSError:
        return False


def _norm_chrom(c: str) -> str:
    return str(c).removeprefix("chr")


def finetune(input_path: str, out_dir: str, model_source: str | None = None, ref: str | None = None,
             embed_opts: EmbedOptions = EmbedOptions(), opts: FinetuneOptions = FinetuneOptions(),
             progress: Callable[[int], None] | None = None) -> dict:
    """Run ``finetune --method probe``; returns the report (also written to ``out_dir``)."""
    if opts.method != "probe":
        raise OptionError(f"--method {opts.method}: this version fits probes on frozen embeddings (--method probe); "
                          "full fine-tuning is on the roadmap")
    if not Path(input_path).exists():
        raise InputFileError(f"{input_path}: no such labelled table or embeddings file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols, X, spec = _features(input_path, out, model_source, ref, embed_opts, progress)
    if "label" not in cols:
        raise ProbeError(f"{input_path}: no label column; embed a labelled table (columns chromosome, position, "
                         "ref, alt, label)")
    keep = ~np.isnan(X).any(axis=1) & np.array(["N_IN_WINDOW" not in (f or "") for f in cols["flag"]])
    dropped = int((~keep).sum())
    if dropped:
        log.warning("%d of %d variants dropped (window >= 0.5%% N, or not embedded)", dropped, len(keep))
    rows = np.flatnonzero(keep)
    y = np.array([cols["label"][i] for i in rows], np.int64)
    X = X[rows]
    chroms = np.array([_norm_chrom(cols["chrom"][i]) for i in rows])
    tissue = [cols["tissue"][i] for i in rows] if "tissue" in cols and opts.probe.use_tissue else None
    dist = (np.array([np.nan if cols["distance_to_nearest_tss"][i] is None else cols["distance_to_nearest_tss"][i]
                      for i in rows], np.float64) if "distance_to_nearest_tss" in cols else None)
    if opts.split == "chrom":
        test = np.isin(chroms, [_norm_chrom(c) for c in opts.test_chroms])
        if not test.any() or test.all():
            have = ", ".join(sorted(set(chroms.tolist())))
            raise ProbeError(f"{input_path}: --test-chroms {','.join(opts.test_chroms)} leaves "
                             f"{'no test' if not test.any() else 'no training'} rows (chromosomes present: {have}); "
                             "pick other --test-chroms or use --split cv")
        probe = fit_probe(X[~test], y[~test], chroms[~test], spec, opts.probe, _sub(tissue, ~test))
        score = probe.decision(X[test], _sub(tissue, test))
        per_seed = [_auroc(y[test], d) for d in probe.decision_per_seed(X[test], _sub(tissue, test))]
        test_idx = np.flatnonzero(test)
    elif opts.split == "cv":
        score, per_seed = _cross_validate(X, y, chroms, [cols["pos"][i] for i in rows], tissue, spec, opts)
        probe = fit_probe(X, y, chroms, spec, opts.probe, tissue)
        test_idx = np.arange(len(y))
    else:
        raise OptionError(f"--split {opts.split}: expected chrom or cv")
    yt = y[test_idx]
    dt = dist[test_idx] if dist is not None else None
    metrics = evaluate(yt, score, dt, opts.bootstrap)
    metrics["per_seed_auroc" if opts.split == "chrom" else "per_fold_auroc"] = per_seed
    probe.info |= {"table": str(input_path), "split": opts.split, "test_chroms": list(opts.test_chroms)}
    probe.save(out / "probe.joblib")
    plot_roc(yt, score, dt, str(out / "roc.png"), f"{spec.model.split('/')[-1]} probe ({opts.split} split)")
    _write_predictions(out / "predictions.tsv", cols, rows[test_idx], yt, score)
    report = {"metrics": metrics, "n_rows": len(keep), "n_dropped": dropped, "n_test": int(len(yt)),
              "chosen_c": probe.chosen_c, "options": _jsonable(asdict(opts)), "embedding": spec.to_dict(),
              "probe": str(out / "probe.joblib"), "files": sorted(p.name for p in out.iterdir())}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _features(input_path: str, out: Path, model_source, ref, embed_opts: EmbedOptions, progress):
    if is_embedding_file(input_path):
        cols, X, spec = read_embeddings(input_path)
        if spec.kind != "variant":
            raise ProbeError(f"{input_path}: holds {spec.kind} embeddings; the probe needs variant embeddings")
        return cols, X, spec
    table = load_table(input_path, embed_opts, need_label=True)
    embedder = Embedder(model_source, embed_opts, ref)
    try:
        rows = embedder.embed_table(table, progress)
        spec = embedder.spec("variant", "centre")
    finally:
        embedder.close()
    sink = ParquetSink(str(out / "embeddings.parquet"), spec)
    sink.write(EmbeddedRows(rows.columns, rows.embedding))
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
