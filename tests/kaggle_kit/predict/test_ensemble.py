import json

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.predict.ensemble import aligned_oof, ensemble_report, fit_weights
from kaggle_kit.registry import get_competition
from kaggle_kit.tasks.metrics import MCRMSE, PEARSON

ELL = get_competition("ell")
TARGETS = ELL.schema.target_names


def _runs(rng, n=400):
    y = rng.uniform(0, 1, size=(n, 1))
    good = y + rng.normal(scale=0.1, size=y.shape)
    noisy = y + rng.normal(scale=0.6, size=y.shape)
    return y, good, noisy


@pytest.mark.parametrize("metric", [PEARSON, MCRMSE])
def test_more_weight_on_the_better_run_and_weights_on_the_simplex(metric):
    y, good, noisy = _runs(np.random.default_rng(0))
    w = fit_weights([noisy, good], y, metric, ["score"])
    assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert w[1] > w[0]


def test_blend_never_worse_than_the_best_single_run():
    rng = np.random.default_rng(1)
    y, good, noisy = _runs(rng)
    other = y + rng.normal(scale=0.1, size=y.shape)
    preds = [noisy, good, other]
    w = fit_weights(preds, y, PEARSON, ["score"])
    blended = PEARSON(y, sum(wi * p for wi, p in zip(w, preds, strict=True)), ["score"]).score
    assert blended >= max(PEARSON(y, p, ["score"]).score for p in preds) - 1e-9
    assert w[1] > 0.2 and w[2] > 0.2, w


@pytest.mark.parametrize("metric", [MCRMSE, PEARSON])
def test_fitted_weights_recover_the_mixture_that_made_the_target(metric):
    """y is exactly 0.3 a + 0.7 b: that blend scores perfectly, and any other weights score worse."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 1)), rng.normal(size=(300, 1))
    w = fit_weights([a, b], 0.3 * a + 0.7 * b, metric, ["score"])
    np.testing.assert_allclose(w, [0.3, 0.7], atol=0.01)


def test_pure_noise_run_gets_almost_no_weight():
    rng = np.random.default_rng(2)
    y = rng.uniform(0, 1, size=(500, 1))
    w = fit_weights([y + rng.normal(scale=0.05, size=y.shape), rng.normal(size=y.shape)], y, MCRMSE, ["score"])
    assert w[1] < 0.02 and w.sum() == pytest.approx(1.0)


def _fake_ell(tmp_path, n=40):
    """A valid ELL train.csv and two run folders whose OOF files cover overlapping rows."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    train = pd.DataFrame({"text_id": [f"t{i:03d}" for i in range(n)], "full_text": ["essay"] * n})
    for t in TARGETS:
        train[t] = rng.integers(2, 10, size=n) / 2
    train.to_csv(data / "train.csv", index=False)
    runs = []
    for name, rows, noise in (("a", slice(0, 30), 0.2), ("b", slice(10, 40), 1.0)):
        run = tmp_path / name
        run.mkdir()
        (run / "run_config.json").write_text(json.dumps({"competition": "ell", "data": str(data)}))
        oof = train.iloc[rows][["text_id", *TARGETS]].copy()
        oof[TARGETS] = oof[TARGETS] + rng.normal(scale=noise, size=oof[TARGETS].shape)
        oof.iloc[::-1].to_csv(run / "oof.csv", index=False)
        runs.append(run)
    return train, runs


def test_oof_aligned_on_ids_and_intersected(tmp_path):
    train, runs = _fake_ell(tmp_path)
    y, preds = aligned_oof(ELL, runs, train)
    assert y.shape == (20, 6) and all(p.shape == (20, 6) for p in preds)
    assert np.allclose(y, train.iloc[10:30][TARGETS].to_numpy())


def test_ensemble_report_scores_each_run_and_the_blend(tmp_path):
    _, runs = _fake_ell(tmp_path)
    report = ensemble_report(ELL, runs)
    assert report.fitted and report.n_rows == 20 and report.runs == ["a", "b"]
    assert report.weights[0] > report.weights[1]
    assert report.blend_score <= min(report.run_scores) + 1e-9
    given = ensemble_report(ELL, runs, weights=[1, 3])
    assert not given.fitted and np.allclose(given.weights, [0.25, 0.75])
    assert "blend" in report.table() and "20 OOF rows" in report.table()


def test_runs_without_common_rows_are_a_clear_error(tmp_path):
    train, runs = _fake_ell(tmp_path)
    oof = pd.read_csv(runs[1] / "oof.csv")
    oof[oof["text_id"] >= "t030"].to_csv(runs[1] / "oof.csv", index=False)
    with pytest.raises(KitError, match="share no OOF rows"):
        aligned_oof(ELL, runs, train)


def test_bad_given_weights_are_rejected(tmp_path):
    _, runs = _fake_ell(tmp_path)
    with pytest.raises(KitError, match="2 ensemble weights for 1 runs"):
        ensemble_report(ELL, runs[:1], weights=[0.5, 0.5])
    with pytest.raises(KitError, match="non-negative"):
        ensemble_report(ELL, runs, weights=[-1, 2])
