"""Evaluation metrics of fine-tuned heads: classification (accuracy, MCC, AUROC) and regression (Pearson, Spearman)."""

from __future__ import annotations

import math

import numpy as np


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def classification_metrics(y: np.ndarray, probs: np.ndarray) -> dict:
    """y (N,) class indices, probs (N, K) -> accuracy, mcc, auroc (binary, or one-vs-rest macro), loss, n."""
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    y = np.asarray(y, np.int64)
    n, k = probs.shape
    if n == 0:
        return {"n": 0, "accuracy": None, "mcc": None, "auroc": None, "loss": None}
    pred = probs.argmax(1)
    present = np.unique(y)
    auroc = None
    if len(present) >= 2:
        if k == 2:
            auroc = roc_auc_score(y, probs[:, 1])
        elif len(present) == k:
            auroc = roc_auc_score(y, probs, multi_class="ovr", labels=list(range(k)))
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(n), y], 1e-12, 1.0))))
    return {
        "n": int(n),
        "accuracy": float((pred == y).mean()),
        "mcc": _clean(float(matthews_corrcoef(y, pred))) if len(np.unique(np.concatenate([y, pred]))) > 1 else 0.0,
        "auroc": _clean(auroc),
        "loss": loss,
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    """y, pred (N, T) in target units -> pearson, spearman (means over targets), mse, and per target."""
    from scipy.stats import pearsonr, spearmanr

    y = np.asarray(y, np.float64).reshape(len(y), -1)
    pred = np.asarray(pred, np.float64).reshape(len(pred), -1)
    n = len(y)
    per = {}
    for t, name in enumerate(names):
        a, b = y[:, t], pred[:, t]
        ok = n >= 2 and np.std(a) > 0 and np.std(b) > 0
        per[name] = {
            "pearson": _clean(float(pearsonr(a, b)[0])) if ok else None,
            "spearman": _clean(float(spearmanr(a, b)[0])) if ok else None,
            "mse": float(np.mean((a - b) ** 2)) if n else None,
        }

    def mean_of(key: str) -> float | None:
        vals = [m[key] for m in per.values() if m[key] is not None]
        return float(np.mean(vals)) if vals else None

    out = {"n": int(n), "pearson": mean_of("pearson"), "spearman": mean_of("spearman"), "mse": mean_of("mse")}
    if len(names) > 1:
        out["per_target"] = per
    return out


def higher_is_better(metric: str) -> bool:
    return metric not in ("loss", "mse")
