"""Competition metrics, each reporting one score plus a per-target breakdown."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MetricResult:
    score: float
    per_target: dict[str, float]


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool
    per_column: Callable[[np.ndarray, np.ndarray], float]
    combine: str = "mean"

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> MetricResult:
        y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
        y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"shape mismatch: y_true {y_true.shape} vs y_pred {y_pred.shape}")
        per_target = {name: float(self.per_column(y_true[:, i], y_pred[:, i])) for i, name in enumerate(names)}
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


MCRMSE = Metric(name="MCRMSE", greater_is_better=False, per_column=rmse)
PEARSON = Metric(name="Pearson", greater_is_better=True, per_column=pearson)
