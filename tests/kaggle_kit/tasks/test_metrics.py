import numpy as np
import pytest

from kaggle_kit.tasks.metrics import MCRMSE, PEARSON


def test_mcrmse_matches_hand_computation():
    y_true = np.array([[3.0, 2.0], [4.0, 2.5], [2.0, 3.0]])
    y_pred = np.array([[3.5, 2.0], [4.0, 3.5], [1.0, 3.0]])
    # column 0 errors: 0.5, 0, -1 -> mean sq 1.25/3; column 1 errors: 0, 1, 0 -> mean sq 1/3
    col0 = np.sqrt(1.25 / 3)
    col1 = np.sqrt(1 / 3)
    result = MCRMSE(y_true, y_pred, ["a", "b"])
    assert result.per_target["a"] == pytest.approx(col0)
    assert result.per_target["b"] == pytest.approx(col1)
    assert result.score == pytest.approx((col0 + col1) / 2)


def test_mcrmse_is_lower_is_better():
    assert MCRMSE.better(0.4, 0.5)
    assert not MCRMSE.better(0.5, 0.4)
    assert MCRMSE.worst == np.inf


def test_pearson_matches_numpy_and_handles_constant():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert PEARSON(a, b, ["score"]).score == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert PEARSON(a, np.ones(50), ["score"]).score == 0.0
    assert PEARSON(rng.normal(size=7381), np.full(7381, 0.36021541796504536), ["score"]).score == 0.0
    assert PEARSON.better(0.8, 0.7)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        MCRMSE(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])
