"""The plots of a run's OOF predictions, by target kind: curves and scores from arrays whose answers are known."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from kaggle_kit.runs import plots
from kaggle_kit.tasks.targets import Target

BINARY = Target("good", kind="binary", classes=("no", "yes"))
THREE = Target("effect", kind="multiclass", classes=("low", "mid", "high"))
METRICS = pd.DataFrame({"fold": [0, 0, 0], "step": [1, 2, 2], "train_loss": [0.9, 0.7, np.nan],
                        "val_score": [np.nan, np.nan, 0.5]})


def binary_case(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels, and probabilities that know them somewhat."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    return y.astype(float)[:, None], p[:, None]


def test_reliability_bins_are_the_observed_frequency_in_each_bin_by_hand():
    hit = np.array([0, 0, 1, 1, 1, 0])
    probability = np.array([0.05, 0.15, 0.12, 0.55, 0.95, 0.91])
    bins = plots.reliability_bins(hit, probability, bins=5)
    # [0, 0.2]: 0.05, 0.15, 0.12 -> 1 hit of 3; (0.4, 0.6]: 0.55 -> 1 of 1; (0.8, 1]: 0.95, 0.91 -> 1 of 2
    assert bins["count"] == [3, 1, 2]
    assert bins["bin_low"] == pytest.approx([0.0, 0.4, 0.8])
    assert bins["observed"] == pytest.approx([1 / 3, 1.0, 0.5])
    assert bins["predicted"] == pytest.approx([0.32 / 3, 0.55, 0.93])
    ece = 3 / 6 * abs(1 / 3 - 0.32 / 3) + 1 / 6 * abs(1 - 0.55) + 2 / 6 * abs(0.5 - 0.93)
    assert bins["ece"] == pytest.approx(ece)
    # a probability on a bin edge falls in the lower bin, as calibration_curve cuts them
    assert plots.reliability_bins(np.array([1, 0]), np.array([0.2, 0.21]), bins=5)["count"] == [1, 1]


def test_a_perfectly_calibrated_prediction_has_no_calibration_error():
    hit = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    probability = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert plots.reliability_bins(hit, probability)["ece"] == pytest.approx(0.0)


def test_binary_run_plots_are_roc_pr_reliability_and_no_regression_scatter(tmp_path):
    y, p = binary_case()
    scores = plots.write_run_plots(tmp_path, METRICS, "brier", y, p, [BINARY])
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        [plots.LEARNING_CURVES, plots.CONFUSION_MATRIX, plots.ROC_PR_CURVES, plots.RELIABILITY])
    record = scores["good"]
    assert record["auc"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    assert record["average_precision"] == pytest.approx(average_precision_score(y[:, 0], p[:, 0]))
    assert 0.7 < record["auc"] < 0.95 and record["positive_class"] == "yes"
    assert sum(record["reliability"]["count"]) == len(y)
    with Image.open(tmp_path / plots.ROC_PR_CURVES) as image:
        assert image.size[0] > 600 and image.size[1] > 300
    assert "AUC" in plots.scores_line("good", record) and "ECE" in plots.scores_line("good", record)


def test_multiclass_curves_are_one_vs_rest_per_class_with_a_macro_mean(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(0, 1, (300, 3)) + 1.2 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores = plots.write_run_plots(tmp_path, METRICS, "log-loss", labels.astype(float)[:, None], probs, [THREE])
    assert not (tmp_path / plots.PREDICTED_VS_TRUE).exists() and (tmp_path / plots.RELIABILITY).is_file()
    record = scores["effect"]
    for i, name in enumerate(THREE.classes):
        assert record["per_class"][name]["auc"] == pytest.approx(roc_auc_score(labels == i, probs[:, i]))
    assert record["auc_macro"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    top_correct = (probs.argmax(axis=1) == labels).astype(int)
    assert record["reliability"] == plots.reliability_bins(top_correct, probs.max(axis=1))


def test_a_class_absent_from_the_labels_has_no_auc_and_is_left_out_of_the_macro():
    labels = np.array([0, 1, 0, 1, 0, 1], dtype=float)[:, None]
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.8, 0.1, 0.1],
                      [0.1, 0.8, 0.1]])
    record = plots.classification_scores(labels, probs, [THREE])["effect"]
    assert record["per_class"]["high"] == {"auc": None, "average_precision": None}
    assert record["auc_macro"] == pytest.approx(np.mean([record["per_class"][c]["auc"] for c in ("low", "mid")]))
    plots.png_bytes(plots.roc_pr_figure(labels, probs, [THREE]))  # draws the classes it can


def test_regression_run_keeps_its_scatter_and_gets_no_curves(tmp_path):
    y = np.linspace(1, 5, 40)[:, None]
    assert plots.write_run_plots(tmp_path, METRICS, "RMSE", y, y + 0.3, [Target("score")]) == {}
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([plots.LEARNING_CURVES, plots.PREDICTED_VS_TRUE])


def test_mixed_targets_split_their_columns_by_kind(tmp_path):
    y_bin, p_bin = binary_case(60)
    y = np.column_stack([np.linspace(1, 5, 60), y_bin[:, 0]])
    pred = np.column_stack([np.linspace(1, 5, 60) + 0.1, p_bin[:, 0]])
    scores = plots.write_run_plots(tmp_path, METRICS, "m", y, pred, [Target("score"), BINARY])
    assert list(scores) == ["good"] and scores["good"]["auc"] == pytest.approx(roc_auc_score(y_bin, p_bin))
    assert {plots.PREDICTED_VS_TRUE, plots.ROC_PR_CURVES} <= {f.name for f in tmp_path.iterdir()}
