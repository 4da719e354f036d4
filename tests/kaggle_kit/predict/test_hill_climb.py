"""Hill climbing: better runs get more weight, per-target weights follow each target's best run, and the held-out
choice of the step count keeps the blend from fitting noise."""

import numpy as np
import pytest

from kaggle_kit.predict.hill_climb import climb, fit_blend


def rmse(y, p):
    return float(np.sqrt(np.mean((y - p) ** 2)))


def test_the_first_step_is_the_best_single_run_and_the_blend_improves_on_it():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    preds = [y + rng.normal(scale=s, size=500) for s in (1.0, 0.3, 0.5)]
    result = climb(preds, y, rmse, greater_is_better=False, steps=10)
    assert result.order[0] == 1 and result.history[0] == pytest.approx(rmse(y, preds[1]))
    assert min(result.history) < result.history[0]
    assert result.weights[1] > result.weights[2] > result.weights[0] and result.weights.sum() == pytest.approx(1.0)


def test_two_independent_good_runs_blend_better_than_either():
    rng = np.random.default_rng(1)
    y = rng.normal(size=2000)
    a, b = y + rng.normal(scale=0.5, size=2000), y + rng.normal(scale=0.5, size=2000)
    fitted = fit_blend([a, b], y, rmse, False, np.arange(2000) % 5, max_steps=10)
    blend = fitted.weights[0] * a + fitted.weights[1] * b
    assert rmse(y, blend) < min(rmse(y, a), rmse(y, b)) - 0.05
    assert 0.3 < fitted.weights[0] < 0.7


def pearson(y, p):
    return float(np.corrcoef(y, p)[0, 1])


def test_held_out_step_choice_beats_climbing_every_step_on_fresh_rows():
    """40 OOF rows, one informative run and 40 pure-noise runs: climbing all 20 steps on all rows adds noise runs
    that correlate by chance; choosing the step count held out keeps the blend on the informative run. Scored on
    2,000 fresh rows (the test set), over 6 seeds."""
    guarded, unguarded = [], []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        y, y_test = rng.normal(size=40), rng.normal(size=2000)
        runs = [y + rng.normal(scale=0.7, size=40)] + [rng.normal(size=40) for _ in range(40)]
        tests = [y_test + rng.normal(scale=0.7, size=2000)] + [rng.normal(size=2000) for _ in range(40)]
        fitted = fit_blend(runs, y, pearson, True, np.arange(40) % 5, max_steps=20)
        every_step = climb(runs, y, pearson, True, steps=20)
        guarded.append(pearson(y_test, sum(w * t for w, t in zip(fitted.weights, tests, strict=True))))
        unguarded.append(pearson(y_test, sum(w * t for w, t in zip(every_step.weights, tests, strict=True))))
    assert np.mean(guarded) > np.mean(unguarded) + 0.05


def test_pearson_direction_is_respected():
    rng = np.random.default_rng(3)
    y = rng.normal(size=300)
    preds = [-y, y + rng.normal(scale=0.2, size=300)]
    result = climb(preds, y, pearson, greater_is_better=True, steps=3)
    assert result.order == [1, 1, 1]
