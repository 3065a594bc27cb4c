"""The VEP probe: StandardScaler + RBF SVC (or logistic regression) on frozen Caduceus features.

As in the paper: C chosen from a grid ({1, 5, 10} for the SVC) by inner
cross-validation, one probe per seed on a random training sample of at most
``train_rows`` rows (5,000), and tissue as one label-encoded extra column. The
probe's score is the seeds' mean ``decision_function`` (never hard labels);
``probability`` (the seeds' mean Platt-calibrated probability: a sigmoid fitted on
cross-validated decision values, scikit-learn's CalibratedClassifierCV) is what
score-vcf writes as CAD_PROB.

A saved probe (joblib: scikit-learn pipelines plus plain data) records the
``EmbeddingSpec`` of its features, so it refuses features from another model,
window, pooling, layer or RC mode. Only load probe files you trust: joblib files
can run code when loaded, like any pickle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from caduceus_cli import __version__
from caduceus_cli.choices import Classifier, choice
from caduceus_cli.errors import ProbeError
from caduceus_cli.inference.spec import EmbeddingSpec

log = logging.getLogger(__name__)

PROBE_FORMAT = "caduceus-probe/1"
C_GRIDS = {"svm": (1.0, 5.0, 10.0), "logreg": (0.01, 0.1, 1.0, 10.0)}


@dataclass(frozen=True)
class ProbeOptions:
    classifier: Classifier | str = Classifier.SVM
    c_grid: tuple[float, ...] | None = None  # default: C_GRIDS[classifier]
    seeds: int = 5
    train_rows: int = 5000
    inner_folds: int = 3
    use_tissue: bool = True


@dataclass
class Probe:
    spec: EmbeddingSpec
    classifier: str
    estimators: list  # one fitted sklearn Pipeline per seed
    chosen_c: list[float]
    tissues: tuple[str, ...] | None = None  # label encoding of the tissue column; None: no tissue feature
    info: dict = field(default_factory=dict)

    # ---- features ----
    def design(self, X: np.ndarray, tissue: list | None = None) -> np.ndarray:
        """Embedding (n, dim) plus the tissue code column when the probe uses tissue -> (n, dim [+1])."""
        if X.shape[1] != self.spec.dim:
            raise ProbeError(f"features have {X.shape[1]} columns; the probe expects {self.spec.dim}")
        if self.tissues is None:
            return X
        if tissue is None:
            raise ProbeError(
                f"this probe was trained with tissue as a feature; give the tissue "
                f"(--tissue, one of: {', '.join(self.tissues)})"
            )
        codes = {t: i for i, t in enumerate(self.tissues)}
        unknown = sorted({str(t) for t in tissue} - set(codes))
        if unknown:
            raise ProbeError(
                f"tissue {unknown[0]!r} was not in the probe's training data (known: {', '.join(self.tissues)})"
            )
        return np.column_stack([X, np.array([codes[str(t)] for t in tissue], np.float32)])  # (n, dim + 1)

    def decision_per_seed(self, X: np.ndarray, tissue: list | None = None) -> list[np.ndarray]:
        D = self.design(X, tissue)
        return [_scoring_pipeline(est).decision_function(D) for est in self.estimators]

    def decision(self, X: np.ndarray, tissue: list | None = None) -> np.ndarray:
        """The probe's score: mean decision function over the seeds, (n,)."""
        return np.mean(self.decision_per_seed(X, tissue), axis=0)

    def probability(self, X: np.ndarray, tissue: list | None = None) -> np.ndarray:
        """Mean calibrated probability of the positive class over the seeds, (n,)."""
        D = self.design(X, tissue)
        return np.mean([est.predict_proba(D)[:, 1] for est in self.estimators], axis=0)

    # ---- files ----
    def check_spec(self, spec: EmbeddingSpec, what: str) -> None:
        diffs = self.spec.mismatch(spec)
        if diffs:
            raise ProbeError(
                f"the probe was trained on different features than {what} ({'; '.join(diffs)}); "
                f"use the probe's model ({self.spec.model}) and window ({self.spec.window} bp), "
                "or train a new probe"
            )

    def save(self, path: str | Path) -> None:
        import joblib

        joblib.dump(
            {
                "format": PROBE_FORMAT,
                "version": __version__,
                "spec": self.spec.to_dict(),
                "classifier": self.classifier,
                "estimators": self.estimators,
                "chosen_c": self.chosen_c,
                "tissues": self.tissues,
                "info": self.info,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> Probe:
        import joblib

        if not Path(path).exists():
            raise ProbeError(f"{path}: no such probe file (write one with `caduceus finetune --method probe -o DIR`)")
        try:
            d = joblib.load(path)
        except Exception as exc:  # any unpickling failure means: not our file
            raise ProbeError(f"{path}: not a readable probe file ({type(exc).__name__})") from exc
        if not isinstance(d, dict) or d.get("format") != PROBE_FORMAT:
            raise ProbeError(f"{path}: not a caduceus probe (expected format {PROBE_FORMAT})")
        return cls(
            EmbeddingSpec.from_dict(d["spec"]),
            d["classifier"],
            d["estimators"],
            d["chosen_c"],
            tuple(d["tissues"]) if d["tissues"] is not None else None,
            d.get("info", {}),
        )


def _pipeline(classifier: Classifier, C: float, seed: int, calibrated: bool):
    """StandardScaler + classifier; ``calibrated`` wraps an SVC in Platt scaling (sigmoid on CV decisions)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if classifier == Classifier.SVM:
        pipe = Pipeline([("scale", StandardScaler()), ("clf", SVC(kernel="rbf", C=C, random_state=seed))])
        if calibrated:
            cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
            return CalibratedClassifierCV(pipe, method="sigmoid", cv=cv, ensemble=False)
        return pipe
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=C, max_iter=5000))])


def _scoring_pipeline(est):
    """The fitted scaler + classifier whose decision_function is the score (inside a calibration wrapper)."""
    return est.calibrated_classifiers_[0].estimator if hasattr(est, "calibrated_classifiers_") else est


def fit_probe(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    spec: EmbeddingSpec,
    opts: ProbeOptions,
    tissue: list | None = None,
) -> Probe:
    """Fit one probe per seed (C by inner grouped CV on AUROC, then refit with probabilities)."""
    from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold

    classifier = choice(Classifier, opts.classifier, "--classifier")
    grid = list(opts.c_grid or C_GRIDS[classifier.value])
    tissues = tuple(sorted({str(t) for t in tissue})) if tissue is not None and opts.use_tissue else None
    probe = Probe(spec, classifier.value, [], [], tissues)
    D = probe.design(X, tissue if tissues else None)  # (n, dim [+1])
    n = len(y)
    _check_classes(y, opts.inner_folds, "training")
    for seed in range(opts.seeds):
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, size=opts.train_rows, replace=False)) if n > opts.train_rows else np.arange(n)
        Ds, ys, gs = D[idx], y[idx], groups[idx]
        _check_classes(ys, opts.inner_folds, f"seed {seed}'s training sample")
        grouped = len(set(gs)) >= opts.inner_folds
        if grouped:
            cv = GroupKFold(n_splits=opts.inner_folds)
        else:
            cv = StratifiedKFold(n_splits=opts.inner_folds, shuffle=True, random_state=seed)
        search = GridSearchCV(
            _pipeline(classifier, 1.0, seed, False), {"clf__C": grid}, scoring="roc_auc", cv=cv, refit=False, n_jobs=1
        )
        search.fit(Ds, ys, **({"groups": gs} if grouped else {}))
        C = float(search.best_params_["clf__C"])
        probe.estimators.append(_pipeline(classifier, C, seed, True).fit(Ds, ys))
        probe.chosen_c.append(C)
        log.info("probe seed %d: %d rows, C=%g (inner CV AUROC %.3f)", seed, len(idx), C, search.best_score_)
    probe.info = {
        "n_train": int(n),
        "n_train_pos": int(y.sum()),
        "train_rows_per_seed": int(min(n, opts.train_rows)),
        "c_grid": grid,
        "seeds": opts.seeds,
    }
    return probe


def _check_classes(y: np.ndarray, folds: int, what: str) -> None:
    counts = np.bincount(y.astype(int), minlength=2)
    if counts.min() < folds:
        raise ProbeError(
            f"the {what} rows have {counts[1]} positive and {counts[0]} negative labels; "
            f"the probe needs at least {folds} of each (more data, or other --test-chroms)"
        )
