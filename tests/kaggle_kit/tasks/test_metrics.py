import numpy as np
import pytest

from kaggle_kit.tasks.metrics import ACCURACY, AUC, LOG_LOSS, MCRMSE, PEARSON, QWK, Metric
from kaggle_kit.tasks.targets import Target


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


def test_log_loss_matches_sklearn_for_classes_and_binary():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=40)
    truth = rng.integers(0, 3, size=40)
    target = Target("effect", kind="multiclass", classes=("a", "b", "c"))
    assert LOG_LOSS(truth[:, None], probs, [target]).score == pytest.approx(log_loss(truth, probs), rel=1e-9)
    p = rng.uniform(size=40)
    binary = Target("spam", kind="binary")
    assert LOG_LOSS(truth[:, None] % 2, p[:, None], [binary]).score == pytest.approx(log_loss(truth % 2, p), rel=1e-9)


def test_a_certain_wrong_class_is_clipped_not_infinite():
    target = Target("effect", kind="multiclass", classes=("a", "b"))
    assert LOG_LOSS(np.array([[0.0]]), np.array([[0.0, 1.0]]), [target]).score == pytest.approx(-np.log(1e-15))


def test_auc_and_accuracy_match_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    truth, p = rng.integers(0, 2, size=50), rng.uniform(size=50)
    binary = Target("spam", kind="binary")
    assert AUC(truth[:, None], p[:, None], [binary]).score == pytest.approx(roc_auc_score(truth, p))
    assert AUC(np.ones((5, 1)), rng.uniform(size=(5, 1)), [binary]).score == 0.5
    assert ACCURACY(truth[:, None], p[:, None], [binary]).score == pytest.approx(np.mean((p >= 0.5) == truth))
    target = Target("effect", kind="multiclass", classes=("a", "b", "c"))
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    assert ACCURACY(np.array([[0.0], [1.0], [1.0]]), probs, [target]).score == pytest.approx(2 / 3)


def test_qwk_matches_sklearn_and_rounds_scores_to_the_grid():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(2)
    truth = rng.integers(1, 7, size=200).astype(float)
    pred = truth + rng.normal(0, 0.8, size=200)
    score = Target("score", low=1, high=6, step=1)
    rounded = np.clip(np.round(pred), 1, 6)
    expected = cohen_kappa_score(truth.astype(int), rounded.astype(int), weights="quadratic")
    assert QWK(truth[:, None], pred[:, None], [score]).score == pytest.approx(expected)
    assert QWK(truth[:, None], truth[:, None], [score]).score == pytest.approx(1.0)
    classes = Target("level", kind="multiclass", classes=("low", "mid", "high"))
    probs = np.eye(3)[[0, 1, 2, 2]] * 0.8 + 0.05
    assert QWK(np.array([[0.], [1.], [2.], [2.]]), probs, [classes]).score == pytest.approx(1.0)


def test_qwk_weights_come_from_the_grid_not_the_values_present():
    """Scores 1, 2 and 6 only: mistaking a 2 for a 6 is four steps, as it is in the competition's scale."""
    score = Target("score", low=1, high=6, step=1)
    truth = np.array([[1.0], [2.0], [6.0], [2.0]])
    near = QWK(truth, np.array([[1.0], [2.0], [6.0], [1.0]]), [score]).score
    far = QWK(truth, np.array([[1.0], [2.0], [6.0], [6.0]]), [score]).score
    assert far < near


def test_multiclass_metric_checks_the_width_of_the_predictions():
    target = Target("effect", kind="multiclass", classes=("a", "b", "c"))
    with pytest.raises(ValueError, match="3 prediction column"):
        LOG_LOSS(np.zeros((4, 1)), np.full((4, 2), 0.5), [target])


def test_a_whole_matrix_metric_gets_all_targets_at_once():
    seen = {}

    def first_column_mae(y_true, y_pred, targets):
        seen["targets"] = [t.name for t in targets]
        return float(np.abs(y_true[:, 0] - y_pred[:, 0]).mean())

    metric = Metric("mae0", greater_is_better=False, whole=first_column_mae)
    result = metric(np.array([[1.0, 2.0]]), np.array([[1.5, 9.0]]), ["a", "b"])
    assert result.score == 0.5 and result.per_target == {} and seen["targets"] == ["a", "b"]


def test_a_plugin_pairing_a_metric_with_the_wrong_kind_fails_when_declared():
    from kaggle_kit.competition import Competition, Schema
    from kaggle_kit.data.folds import kfold

    with pytest.raises(ValueError, match="metric MCRMSE does not score multiclass targets"):
        Competition(name="x", title="x", kaggle_slug="x",
                    schema=Schema("id", ("text",), (Target("t", kind="multiclass", classes=("a", "b")),)),
                    build_inputs=lambda df, ctx: [], input_formats=("text",), metric=MCRMSE,
                    default_loss="cross-entropy", fold_strategy=kfold)
