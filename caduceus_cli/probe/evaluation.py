"""Probe metrics: AUROC / AUPRC overall and per distance-to-TSS bucket, bootstrap CIs, ROC plot."""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

# the paper's buckets of |distance to the nearest TSS| in bp: [0, 30k], (30k, 100k], (100k, inf)
BUCKETS = (("0-30k", -1.0, 30_000.0), ("30k-100k", 30_000.0, 100_000.0), (">100k", 100_000.0, math.inf))


def bucket_masks(distance: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean mask per bucket (lower bound exclusive, upper inclusive; |distance|; NaN in none)."""
    d = np.abs(np.asarray(distance, np.float64))
    return {name: (d > lo) & (d <= hi) for name, lo, hi in BUCKETS}


def binary_metrics(y: np.ndarray, score: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """n, positives, AUROC and AUPRC with percentile 95% bootstrap intervals (None where one class only)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y).astype(int)
    score = np.asarray(score, np.float64)
    out: dict = {
        "n": int(len(y)),
        "n_pos": int(y.sum()),
        "auroc": None,
        "auprc": None,
        "auroc_ci": None,
        "auprc_ci": None,
    }
    if len(y) == 0 or y.min() == y.max():
        return out
    out["auroc"] = float(roc_auc_score(y, score))
    out["auprc"] = float(average_precision_score(y, score))
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        aurocs, auprcs = [], []
        for _ in range(n_boot):
            idx = rng.integers(0, len(y), len(y))
            yb = y[idx]
            if yb.min() == yb.max():
                continue
            aurocs.append(roc_auc_score(yb, score[idx]))
            auprcs.append(average_precision_score(yb, score[idx]))
        if aurocs:
            out["auroc_ci"] = [float(x) for x in np.percentile(aurocs, [2.5, 97.5])]
            out["auprc_ci"] = [float(x) for x in np.percentile(auprcs, [2.5, 97.5])]
    return out


def evaluate(
    y: np.ndarray, score: np.ndarray, distance: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Overall metrics at the top level (``auroc``, ``auprc``, ...) and ``buckets`` when distances exist."""
    result = binary_metrics(y, score, n_boot, seed)
    result["chance_auprc"] = float(np.mean(y)) if len(y) else None
    if distance is not None:
        result["buckets"] = {
            name: binary_metrics(y[m], score[m], n_boot, seed) for name, m in bucket_masks(distance).items()
        }
    return result


def plot_roc(y: np.ndarray, score: np.ndarray, distance: np.ndarray | None, path: str, title: str) -> None:
    """ROC curves, overall and per bucket, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    groups = {"all": np.ones(len(y), bool)}
    if distance is not None:
        groups |= bucket_masks(distance)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, m in groups.items():
        if m.sum() == 0 or y[m].min() == y[m].max():
            continue
        fpr, tpr, _ = roc_curve(y[m], score[m])
        ax.plot(
            fpr,
            tpr,
            lw=2 if name == "all" else 1.2,
            label=f"{name} (AUROC {roc_auc_score(y[m], score[m]):.3f}, n={int(m.sum())})",
        )
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
