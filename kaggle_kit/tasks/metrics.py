"""Competition metrics on whole prediction matrices, each reporting one score plus a per-target breakdown.

A metric is called with the encoded labels (n, n_targets), the predictions (n, n_outputs) and the targets that
say which prediction columns belong to which label (one for a score or a binary probability, K for a multiclass
target's probabilities). Most Kaggle metrics are a mean over targets of a per-target score: give `per_column`
(labels, predictions) or `per_target` (labels, predictions, target); a metric of the whole matrix gives `whole`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kaggle_kit.tasks.targets import Target, as_targets, output_slices


@dataclass(frozen=True)
class MetricResult:
    score: float
    per_target: dict[str, float]


@dataclass(frozen=True)
class Metric:
    """`per_column(y_true, y_pred)` gets a target's label column and its prediction column (K columns for a
    multiclass target); `per_target` also gets the Target (its classes, its value grid); `whole(y_true, y_pred,
    targets)` scores the matrices at once (then the per-target breakdown is empty). `kinds` are the target kinds
    the metric scores (None: any), checked when a plugin is declared."""

    name: str
    greater_is_better: bool
    per_column: Callable[[np.ndarray, np.ndarray], float] | None = None
    combine: str = "mean"
    per_target: Callable[[np.ndarray, np.ndarray, Target], float] | None = None
    whole: Callable[[np.ndarray, np.ndarray, Sequence[Target]], float] | None = None
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if sum(f is not None for f in (self.per_column, self.per_target, self.whole)) != 1:
            raise ValueError(f"metric {self.name!r}: give exactly one of per_column, per_target, whole")

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, targets: Sequence[Target | str]) -> MetricResult:
        targets = as_targets(targets)
        y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
        y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
        width = sum(t.width for t in targets)
        if y_true.shape != (len(y_pred), len(targets)) or y_pred.shape[1] != width:
            raise ValueError(f"shape mismatch: y_true {y_true.shape} vs y_pred {y_pred.shape} for {len(targets)} "
                             f"target(s) with {width} prediction column(s)")
        if self.whole is not None:
            return MetricResult(score=float(self.whole(y_true, y_pred, targets)), per_target={})
        per_target = {}
        for i, (target, columns) in enumerate(zip(targets, output_slices(targets), strict=True)):
            pred = y_pred[:, columns] if target.width > 1 else y_pred[:, columns.start]
            if self.per_target is not None:
                per_target[target.name] = float(self.per_target(y_true[:, i], pred, target))
            else:
                per_target[target.name] = float(self.per_column(y_true[:, i], pred))
        return MetricResult(score=float(np.mean(list(per_target.values()))), per_target=per_target)

    def better(self, a: float, b: float) -> bool:
        """Is score `a` better than score `b`?"""
        return a > b if self.greater_is_better else a < b

    @property
    def worst(self) -> float:
        return -np.inf if self.greater_is_better else np.inf


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson r; a constant prediction has no correlation, so it scores 0 rather than NaN (checked on the raw
    values: centring a constant like 0.3602 leaves rounding noise that would otherwise score about +-1e-17)."""
    if np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return 0.0
    yt = y_true - y_true.mean()
    yp = y_pred - y_pred.mean()
    denom = np.sqrt((yt**2).sum() * (yp**2).sum())
    return float((yt * yp).sum() / denom) if denom > 0 else 0.0


# Kaggle's log loss clips probabilities to [eps, 1 - eps] and rescales each row to sum to 1.
LOG_LOSS_EPS = 1e-15


def class_probabilities(y_pred: np.ndarray, target: Target) -> np.ndarray:
    """(n, K) probabilities of a classification target's prediction: a binary target's column is P(positive)."""
    if target.kind == "binary":
        return np.stack([1.0 - y_pred, y_pred], axis=1)
    return y_pred


def log_loss(y_true: np.ndarray, y_pred: np.ndarray, target: Target) -> float:
    """Mean negative log-probability of the true class, as Kaggle computes it."""
    probs = np.clip(class_probabilities(y_pred, target), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(probs[np.arange(len(y_true)), y_true.astype(np.int64)])))


def roc_auc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Area under the ROC curve; 0.5 when only one class is present (no ranking to judge)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y_true)) < 2:
        return 0.5
    return float(roc_auc_score(y_true, y_pred))


def predicted_labels(y_pred: np.ndarray, target: Target) -> np.ndarray:
    """Hard labels on the target's value grid: argmax class index, P >= 0.5, or the nearest allowed score
    (whole numbers when the score has no grid)."""
    if target.kind == "multiclass":
        return np.argmax(y_pred, axis=1).astype(np.float64)
    if target.kind == "binary":
        return (y_pred >= 0.5).astype(np.float64)
    grid = target.grid()
    if grid is None:
        return np.round(y_pred)
    return grid[np.abs(y_pred[:, None] - grid[None, :]).argmin(axis=1)]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray, target: Target) -> float:
    return float(np.mean(predicted_labels(y_pred, target) == y_true))


def quadratic_weighted_kappa(y_true: np.ndarray, y_pred: np.ndarray, target: Target) -> float:
    """Cohen's kappa with quadratic weights on the target's ordered values (a value's weight position is its
    place on the target's grid, present in the data or not). A regression prediction is rounded to the nearest
    allowed score (fitted thresholds do better: kaggle_kit.tasks.postprocess.OrdinalThresholds), a multiclass
    one takes its most probable class. 0 when the kappa is undefined (a single value throughout)."""
    from sklearn.metrics import cohen_kappa_score

    truth = np.asarray(y_true, dtype=np.float64)
    labels = predicted_labels(np.asarray(y_pred, dtype=np.float64), target)
    grid = target.grid()
    if grid is None:
        low = min(np.round(truth).min(), labels.min())
        truth_at, labels_at = (np.round(truth) - low).astype(np.int64), (labels - low).astype(np.int64)
        size = int(max(truth_at.max(), labels_at.max())) + 1
    else:
        truth_at = np.abs(truth[:, None] - grid[None, :]).argmin(axis=1)
        labels_at = np.abs(labels[:, None] - grid[None, :]).argmin(axis=1)
        size = len(grid)
    if len(np.union1d(truth_at, labels_at)) < 2:
        return 0.0
    score = cohen_kappa_score(truth_at, labels_at, labels=np.arange(size), weights="quadratic")
    return 0.0 if not np.isfinite(score) else float(score)


MCRMSE = Metric(name="MCRMSE", greater_is_better=False, per_column=rmse, kinds=("regression", "binary"))
PEARSON = Metric(name="Pearson", greater_is_better=True, per_column=pearson, kinds=("regression", "binary"))
LOG_LOSS = Metric(name="log-loss", greater_is_better=False, per_target=log_loss, kinds=("binary", "multiclass"))
AUC = Metric(name="AUC", greater_is_better=True, per_column=roc_auc, kinds=("binary",))
ACCURACY = Metric(name="accuracy", greater_is_better=True, per_target=accuracy)
QWK = Metric(name="QWK", greater_is_better=True, per_target=quadratic_weighted_kappa)
