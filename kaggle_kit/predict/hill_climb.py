"""Greedy hill climbing with replacement over runs' OOF predictions (Caruana et al. 2004; ELL 3rd place).

Each step adds one run (it may be added again) to the blend, choosing the one that improves the blend's OOF score
most; a run's weight is how often it was added. `kit ensemble` fits weights per target where the metric is a mean
of per-target scores (MCRMSE): the 1st and 2nd ELL solutions weighted each target on its own.

Guard against fitting noise: with many runs and few OOF rows, every extra step fits the OOF rows a little more and
the test a little less. The number of steps is therefore chosen by cross-validation over the OOF rows: the climb
runs on K-1 chunks and is scored on the held-out chunk after every step; the step count with the best mean
held-out score is kept, and the final weights are a climb of that many steps on all rows. That held-out mean is
reported as the honest estimate of the blend's score (the all-rows score is optimistic).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Score = Callable[[np.ndarray, np.ndarray], float]  # (truth, prediction) -> score


@dataclass
class Climb:
    order: list[int]  # the run added at each step
    history: list[float]  # the blend's score after each step (step 1: the best single run)
    n_runs: int

    @property
    def weights(self) -> np.ndarray:
        counts = np.bincount(self.order, minlength=self.n_runs).astype(np.float64)
        return counts / counts.sum()


def climb(preds: Sequence[np.ndarray], y: np.ndarray, score: Score, greater_is_better: bool, steps: int) -> Climb:
    """`steps` greedy additions with replacement; ties keep the earlier run, so the result is deterministic."""
    sign = 1.0 if greater_is_better else -1.0
    total = np.zeros_like(np.asarray(preds[0], dtype=np.float64))
    order, history = [], []
    for step in range(steps):
        candidates = [sign * score(y, (total + p) / (step + 1)) for p in preds]
        best = int(np.argmax(candidates))
        order.append(best)
        total = total + preds[best]
        history.append(sign * candidates[best])
    return Climb(order, history, len(preds))


def held_out_curve(preds: Sequence[np.ndarray], y: np.ndarray, score: Score, greater_is_better: bool,
                   max_steps: int, chunks: np.ndarray) -> np.ndarray:
    """Mean held-out score after each step, over the chunks of the OOF rows (each held out once)."""
    labels = np.unique(chunks)
    curve = np.zeros(max_steps)
    for label in labels:
        fit, hold = chunks != label, chunks == label
        result = climb([p[fit] for p in preds], y[fit], score, greater_is_better, max_steps)
        running = np.zeros_like(np.asarray(preds[0][hold], dtype=np.float64))
        for step, added in enumerate(result.order):
            running = running + preds[added][hold]
            curve[step] += score(y[hold], running / (step + 1)) / len(labels)
    return curve


@dataclass
class FittedBlend:
    weights: np.ndarray  # per run
    steps: int
    all_rows_curve: list[float]
    held_out_curve: list[float]

    @property
    def held_out_score(self) -> float:
        return self.held_out_curve[self.steps - 1]


def fit_blend(preds: Sequence[np.ndarray], y: np.ndarray, score: Score, greater_is_better: bool,
              chunks: np.ndarray, max_steps: int = 30) -> FittedBlend:
    """Hill-climbed weights with the step count chosen on held-out chunks of the OOF rows."""
    curve = held_out_curve(preds, y, score, greater_is_better, max_steps, chunks)
    sign = 1.0 if greater_is_better else -1.0
    steps = int(np.argmax(sign * curve)) + 1
    final = climb(preds, y, score, greater_is_better, max_steps)
    weights = Climb(final.order[:steps], final.history[:steps], len(preds)).weights
    return FittedBlend(weights, steps, final.history, curve.tolist())
