"""Post-processors fitted on out-of-fold predictions, and how the kit fits, saves and applies them.

A post-processor has a `name`, `fit(pred, truth, targets) -> state` and `apply(pred, state, targets) -> pred`
(kaggle_kit.competition.PostProcessor). `kit train` fits it once all folds are done, on oof.csv's predictions,
saves {"name", "state"} as the run's postprocess.json and reports the score before and after in cv.json (after:
fitted on all OOF rows, and cross-fitted: each fold's rows post-processed with a state fitted on the other folds,
an estimate that does not flatter the fit). Ensembles blend the predictions before post-processing and fit it
again on the blended OOF predictions (what top solutions do: thresholds fitted per member do not fit a blend).

A label-token run of a plugin without a post-processor gets the kit's own LinearCalibration instead, adopted per
score target only where it lowers the cross-fitted metric (adopt_calibration); its postprocess.json names it, so
apply_record applies it without the plugin declaring it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kaggle_kit.errors import KitError
from kaggle_kit.tasks.targets import Target, output_slices

log = logging.getLogger(__name__)


def _qwk_positions(truth_at: np.ndarray, pred_at: np.ndarray, size: int) -> float:
    """Quadratic weighted kappa of grid positions (0..size-1), from the confusion matrix (fast for search)."""
    observed = np.bincount(truth_at * size + pred_at, minlength=size * size).reshape(size, size).astype(np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    weights = (np.arange(size)[:, None] - np.arange(size)[None, :]) ** 2
    denominator = (weights * expected).sum()
    return 0.0 if denominator == 0 else float(1.0 - (weights * observed).sum() / denominator)


@dataclass(frozen=True)
class OrdinalThresholds:
    """Cut points between a score's allowed values, fitted to maximise quadratic weighted kappa.

    Regression targets with a value grid only (e.g. Target("score", low=1, high=6, step=1)); a prediction
    below the first cut becomes the lowest value, and so on. The fit starts from the midpoints (plain rounding)
    and moves one cut at a time to the best point between its neighbours, `rounds` times over; the points tried
    are evenly spaced and at quantiles of the predictions (so a cut can fall between predictions that crowd
    together). Deterministic, and never worse than rounding on the rows it is fitted on.
    """

    name: str = "thresholds"
    rounds: int = 3
    candidates: int = 41

    def _targets(self, targets: Sequence[Target]) -> list[tuple[int, Target, np.ndarray]]:
        found = [(i, t, t.grid()) for i, t in enumerate(targets) if t.kind == "regression"]
        found = [(i, t, g) for i, t, g in found if g is not None and len(g) >= 2]
        if not found:
            raise KitError("thresholds: no regression target with discrete values (low/high/step or allowed)")
        return found

    def fit(self, pred: np.ndarray, truth: np.ndarray, targets: Sequence[Target]) -> dict[str, Any]:
        cuts = {}
        slices = output_slices(targets)
        for i, target, grid in self._targets(targets):
            scores = np.asarray(pred, dtype=np.float64)[:, slices[i].start]
            truth_at = np.abs(np.asarray(truth, dtype=np.float64)[:, i, None] - grid[None, :]).argmin(axis=1)
            cuts[target.name] = self._fit_one(scores, truth_at, grid)
        return {"thresholds": cuts}

    def _fit_one(self, scores: np.ndarray, truth_at: np.ndarray, grid: np.ndarray) -> list[float]:
        size = len(grid)
        cut = (grid[:-1] + grid[1:]) / 2

        def score(c: np.ndarray) -> float:
            return _qwk_positions(truth_at, np.searchsorted(c, scores, side="right"), size)

        best = score(cut)
        low_end, high_end = min(scores.min(), grid[0]) - 1e-6, max(scores.max(), grid[-1]) + 1e-6
        for _ in range(self.rounds):
            moved = False
            for j in range(len(cut)):
                low = cut[j - 1] if j > 0 else low_end
                high = cut[j + 1] if j + 1 < len(cut) else high_end
                inside = scores[(scores > low) & (scores < high)]
                points = np.linspace(low, high, self.candidates)[1:-1]
                if len(inside):
                    points = np.union1d(points, np.quantile(inside, np.linspace(0, 1, self.candidates)))
                for value in points:
                    trial = cut.copy()
                    trial[j] = value
                    trial_score = score(trial)
                    if trial_score > best + 1e-12:
                        best, cut, moved = trial_score, trial, True
            if not moved:
                break
        return [float(c) for c in cut]

    def apply(self, pred: np.ndarray, state: dict[str, Any], targets: Sequence[Target]) -> np.ndarray:
        out = np.array(pred, dtype=np.float64, copy=True)
        slices = output_slices(targets)
        for i, target, grid in self._targets(targets):
            cut = np.asarray(state["thresholds"][target.name], dtype=np.float64)
            column = slices[i].start
            out[:, column] = grid[np.searchsorted(cut, out[:, column], side="right")]
        return out


@dataclass(frozen=True)
class TemperatureScaling:
    """One temperature per classification target, fitted to minimise log loss: probabilities p become
    softmax(log p / T) (a binary target's P(positive) sigmoid(logit p / T)). T > 1 softens over-confident
    predictions, T < 1 sharpens an under-confident blend. Regression targets pass through."""

    name: str = "temperature"
    eps: float = 1e-7

    def _log_probs(self, block: np.ndarray, target: Target) -> np.ndarray:
        probs = np.stack([1 - block[:, 0], block[:, 0]], axis=1) if target.kind == "binary" else block
        return np.log(np.clip(probs, self.eps, 1.0))

    @staticmethod
    def _scaled(log_probs: np.ndarray, temperature: float) -> np.ndarray:
        z = log_probs / temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def fit(self, pred: np.ndarray, truth: np.ndarray, targets: Sequence[Target]) -> dict[str, Any]:
        from scipy.optimize import minimize_scalar

        temperatures = {}
        for i, (target, columns) in enumerate(zip(targets, output_slices(targets), strict=True)):
            if target.kind == "regression":
                continue
            log_probs = self._log_probs(np.asarray(pred, dtype=np.float64)[:, columns], target)
            index = np.asarray(truth[:, i], dtype=np.int64)

            def loss(log_t: float, log_probs=log_probs, index=index) -> float:
                probs = self._scaled(log_probs, float(np.exp(log_t)))
                return float(-np.mean(np.log(np.clip(probs[np.arange(len(index)), index], 1e-15, 1.0))))

            result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                                     options={"xatol": 1e-6})
            temperatures[target.name] = float(np.exp(result.x)) if loss(result.x) < loss(0.0) else 1.0
        if not temperatures:
            raise KitError("temperature: no classification target to calibrate")
        return {"temperature": temperatures}

    def apply(self, pred: np.ndarray, state: dict[str, Any], targets: Sequence[Target]) -> np.ndarray:
        out = np.array(pred, dtype=np.float64, copy=True)
        for target, columns in zip(targets, output_slices(targets), strict=True):
            if target.name not in state["temperature"]:
                continue
            scaled = self._scaled(self._log_probs(out[:, columns], target), state["temperature"][target.name])
            out[:, columns] = scaled[:, 1:] if target.kind == "binary" else scaled
        return out


@dataclass(frozen=True)
class LinearCalibration:
    """Per score target with a value grid, a*x + b fitted by least squares, clipped to the grid's range.

    What a label-token head's expected value over its level words needs: a softmax over levels pulls the expected
    value toward the middle (a > 1 undoes it). The kit fits it itself on a label-token run's OOF predictions
    (`adopt_calibration`), keeping a target's line only where it lowers the cross-fitted metric; targets absent
    from the state pass through.
    """

    name: str = "calibration"

    @staticmethod
    def _targets(targets: Sequence[Target]) -> list[tuple[int, Target, np.ndarray]]:
        found = [(i, t, t.grid()) for i, t in enumerate(targets) if t.kind == "regression"]
        return [(i, t, g) for i, t, g in found if g is not None and len(g) >= 2]

    def fit(self, pred: np.ndarray, truth: np.ndarray, targets: Sequence[Target]) -> dict[str, Any]:
        lines, slices = {}, output_slices(targets)
        for i, target, _ in self._targets(targets):
            x = np.asarray(pred, dtype=np.float64)[:, slices[i].start]
            y = np.asarray(truth, dtype=np.float64)[:, i]
            a, b = (np.polyfit(x, y, 1) if np.ptp(x) > 0 else (1.0, 0.0))
            lines[target.name] = [float(a), float(b)]
        return {"calibration": lines}

    def apply(self, pred: np.ndarray, state: dict[str, Any], targets: Sequence[Target]) -> np.ndarray:
        out = np.array(pred, dtype=np.float64, copy=True)
        slices = output_slices(targets)
        for i, target, grid in self._targets(targets):
            if target.name in state["calibration"]:
                a, b = state["calibration"][target.name]
                column = slices[i].start
                out[:, column] = np.clip(a * out[:, column] + b, grid[0], grid[-1])
        return out


def adopt_calibration(pred: np.ndarray, truth: np.ndarray, targets: Sequence[Target], folds: np.ndarray,
                      metric) -> dict[str, Any] | None:
    """LinearCalibration's record fitted on all OOF rows, holding only the targets whose cross-fitted metric (each
    fold calibrated by a line fitted on the other folds) beats the uncalibrated one; None when none does, or with
    fewer than two folds (nothing to judge it on)."""
    return calibration_and_crossfit(pred, truth, targets, folds, metric)[0]


def calibration_and_crossfit(pred: np.ndarray, truth: np.ndarray, targets: Sequence[Target], folds: np.ndarray,
                             metric) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """`adopt_calibration`'s record, with the cross-fitted predictions it was judged on (for the honest score)."""
    calibration = LinearCalibration()
    if not calibration._targets(targets):
        return None, None
    crossfitted = crossfit(calibration, pred, truth, targets, folds)
    if crossfitted is None:
        return None, None
    before, after = metric(truth, pred, targets).per_target, metric(truth, crossfitted, targets).per_target
    better = (lambda new, old: new > old) if metric.greater_is_better else (lambda new, old: new < old)
    record = fit_record(calibration, pred, truth, targets)
    lines = record["state"]["calibration"]
    record["state"]["calibration"] = {name: line for name, line in lines.items() if better(after[name], before[name])}
    for name in lines:
        log.info("calibration of %s: %s %.4f -> %.4f cross-fitted: %s", name, metric.name, before[name], after[name],
                 "adopted" if name in record["state"]["calibration"] else "not adopted")
    return (record if record["state"]["calibration"] else None), crossfitted


# ---- how the kit uses a post-processor --------------------------------------------------------------------------

def fit_record(postprocessor, pred: np.ndarray, truth: np.ndarray, targets: Sequence[Target]) -> dict[str, Any]:
    """What a run saves as postprocess.json: the post-processor's name and the state it fitted."""
    return {"name": postprocessor.name, "state": postprocessor.fit(pred, truth, targets), "n_rows": len(pred)}


def apply_record(postprocessor, record: dict[str, Any] | None, pred: np.ndarray, targets: Sequence[Target],
                 where: str) -> np.ndarray:
    """`pred` post-processed with a saved state. A state of another post-processor is refused by name: applying
    it would change the predictions silently."""
    if postprocessor is None and record is not None and record.get("name") == LinearCalibration.name:
        postprocessor = LinearCalibration()  # the kit's own, fitted on a label-token run's OOF (adopt_calibration)
    if postprocessor is None and record is None:
        return pred
    if record is None:
        log.warning("%s: no fitted %s state; predictions are not post-processed (the state is fitted when "
                    "`kit train` finishes: train the run to the end or --resume it)", where, postprocessor.name)
        return pred
    if postprocessor is None or record.get("name") != postprocessor.name:
        have = postprocessor.name if postprocessor is not None else "none"
        raise KitError(f"{where}: fitted with post-processor {record.get('name')!r}, the plugin's is {have!r}; "
                       f"predict with the plugin version the run was trained with, or retrain")
    return postprocessor.apply(pred, record["state"], targets)


def crossfit(postprocessor, pred: np.ndarray, truth: np.ndarray, targets: Sequence[Target],
             folds: np.ndarray) -> np.ndarray | None:
    """Each fold's rows post-processed with a state fitted on the other folds' rows (None with one fold)."""
    present = np.unique(folds)
    if len(present) < 2:
        return None
    out = np.array(pred, dtype=np.float64, copy=True)
    for fold in present:
        rows = folds == fold
        state = postprocessor.fit(pred[~rows], truth[~rows], targets)
        out[rows] = postprocessor.apply(pred[rows], state, targets)
    return out
