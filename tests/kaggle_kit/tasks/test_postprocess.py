import logging

import numpy as np
import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.tasks.metrics import LOG_LOSS, QWK
from kaggle_kit.tasks.postprocess import (
    OrdinalThresholds,
    TemperatureScaling,
    apply_record,
    crossfit,
    fit_record,
)
from kaggle_kit.tasks.targets import Target

SCORE = [Target("score", low=1, high=6, step=1)]
EFFECT = [Target("effect", kind="multiclass", classes=("a", "b", "c"))]


def _shrunk_scores(n=1500, seed=0):
    """What a regressor does: predictions pulled toward the mean, so plain rounding rarely reaches 1 or 6."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 7, size=n).astype(float)
    return (3.5 + (truth - 3.5) * 0.45 + rng.normal(0, 0.5, size=n))[:, None], truth[:, None]


def test_thresholds_beat_rounding_and_predict_grid_values():
    pred, truth = _shrunk_scores()
    pp = OrdinalThresholds()
    state = pp.fit(pred, truth, SCORE)
    cuts = state["thresholds"]["score"]
    assert len(cuts) == 5 and cuts == sorted(cuts) and cuts != [1.5, 2.5, 3.5, 4.5, 5.5]
    after = pp.apply(pred, state, SCORE)
    assert set(np.unique(after)) <= {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}
    assert QWK(truth, after, SCORE).score > QWK(truth, pred, SCORE).score + 0.1
    assert pp.fit(pred, truth, SCORE) == state  # deterministic


def test_thresholds_start_from_rounding_and_keep_it_when_nothing_is_better():
    truth = np.array([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    state = OrdinalThresholds().fit(truth.copy(), truth, SCORE)
    assert np.array_equal(OrdinalThresholds().apply(truth, state, SCORE), truth)


def test_thresholds_need_a_score_with_discrete_values():
    with pytest.raises(KitError, match="no regression target with discrete values"):
        OrdinalThresholds().fit(np.zeros((3, 1)), np.zeros((3, 1)), [Target("x", low=0, high=1)])


def test_temperature_softens_overconfident_probabilities():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1.5, size=(3000, 3))
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(3, p=row) for row in calibrated])  # labels drawn from the calibrated probabilities
    probs = np.exp(4 * logits) / np.exp(4 * logits).sum(axis=1, keepdims=True)  # sharpened 4x: overconfident
    pp = TemperatureScaling()
    state = pp.fit(probs, truth[:, None], EFFECT)
    assert state["temperature"]["effect"] == pytest.approx(4.0, rel=0.1)
    after = pp.apply(probs, state, EFFECT)
    assert np.allclose(after.sum(axis=1), 1.0)
    assert LOG_LOSS(truth[:, None], after, EFFECT).score < LOG_LOSS(truth[:, None], probs, EFFECT).score - 0.1
    assert np.array_equal(after.argmax(axis=1), probs.argmax(axis=1))  # calibration keeps the ranking


def test_temperature_of_a_binary_target_scales_its_logit():
    p = np.array([[0.9], [0.2]])
    after = TemperatureScaling().apply(p, {"temperature": {"spam": 2.0}}, [Target("spam", kind="binary")])
    logit = np.log(p / (1 - p)) / 2
    assert np.allclose(after, 1 / (1 + np.exp(-logit)))


def test_a_saved_state_of_another_post_processor_is_refused(caplog):
    record = {"name": "thresholds", "state": {"thresholds": {"score": [1.5, 2.5, 3.5, 4.5, 5.5]}}}
    with pytest.raises(KitError, match="fitted with post-processor 'thresholds', the plugin's is 'temperature'"):
        apply_record(TemperatureScaling(), record, np.zeros((2, 3)), EFFECT, "run")
    with pytest.raises(KitError, match="the plugin's is 'none'"):
        apply_record(None, record, np.zeros((2, 1)), SCORE, "run")
    pred = np.array([[2.2]])
    with caplog.at_level(logging.WARNING):
        assert apply_record(OrdinalThresholds(), None, pred, SCORE, "run") is pred
    assert "no fitted thresholds state" in caplog.text


def test_fit_record_and_crossfit():
    pred, truth = _shrunk_scores(600, seed=4)
    record = fit_record(OrdinalThresholds(), pred, truth, SCORE)
    assert record["name"] == "thresholds" and record["n_rows"] == 600
    folds = np.arange(600) % 3
    crossed = crossfit(OrdinalThresholds(), pred, truth, SCORE, folds)
    for fold in range(3):  # each fold's rows get the state fitted on the other folds' rows
        rows = folds == fold
        state = OrdinalThresholds().fit(pred[~rows], truth[~rows], SCORE)
        assert np.array_equal(crossed[rows], OrdinalThresholds().apply(pred[rows], state, SCORE))
    assert crossfit(OrdinalThresholds(), pred, truth, SCORE, np.zeros(600)) is None


ELL_LIKE = [Target("cohesion", low=1.0, high=5.0, step=0.5), Target("syntax", low=1.0, high=5.0, step=0.5)]


def _levels(n=1200, seed=0):
    """ELL-like scores 1-5 in 0.5 steps and a calibrated prediction of each (the truth is the prediction plus
    noise, rounded to the grid: nothing for a line to gain), in four folds."""
    rng = np.random.default_rng(seed)
    pred = rng.normal(3.0, 0.5, size=(n, 2))
    truth = np.clip(np.round((pred + rng.normal(0, 0.4, size=pred.shape)) * 2) / 2, 1, 5)
    return truth, pred, np.arange(n) % 4


def test_calibration_is_adopted_where_the_expected_value_is_compressed():
    from kaggle_kit.tasks.metrics import MCRMSE
    from kaggle_kit.tasks.postprocess import LinearCalibration, adopt_calibration

    truth, pred, folds = _levels()
    pred[:, 0] = 3.0 + (pred[:, 0] - 3.0) * 0.5  # cohesion's expected value pulled toward the middle; syntax is fine
    record = adopt_calibration(pred, truth, ELL_LIKE, folds, MCRMSE)
    assert record["name"] == "calibration" and set(record["state"]["calibration"]) == {"cohesion"}
    a, b = record["state"]["calibration"]["cohesion"]
    assert a == pytest.approx(2.0, rel=0.1) and b == pytest.approx(-3.0, abs=0.4)
    after = apply_record(None, record, pred, ELL_LIKE, "test")  # the kit's own: no plugin post-processor needed
    assert np.array_equal(after[:, 1], pred[:, 1])
    before = MCRMSE(truth, pred, ELL_LIKE).per_target["cohesion"]
    assert MCRMSE(truth, after, ELL_LIKE).per_target["cohesion"] < before - 0.05
    assert np.array_equal(after, LinearCalibration().apply(pred, record["state"], ELL_LIKE))


def test_calibration_is_not_adopted_where_it_does_not_help():
    from kaggle_kit.tasks.metrics import MCRMSE
    from kaggle_kit.tasks.postprocess import adopt_calibration

    truth, pred, folds = _levels()
    assert adopt_calibration(pred, truth, ELL_LIKE, folds, MCRMSE) is None
    assert adopt_calibration(pred, truth, ELL_LIKE, np.zeros(len(pred), dtype=int), MCRMSE) is None  # one fold
