"""A plugin package outside this repository declares a binary task with its own loss and its own metric, and
trains, reports and predicts with them: nothing in kaggle_kit/ knows about them."""

import importlib
import json
import textwrap
from importlib.metadata import EntryPoint

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from kaggle_kit import registry
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e

PLUGIN = '''
"""An external kaggle-kit plugin: is an essay's cohesion at least 3? Binary, squared hinge loss, Brier score."""
import numpy as np
import torch
from torch import nn

from kaggle_kit.competition import Competition, Schema, Target
from kaggle_kit.data.folds import kfold
from kaggle_kit.tasks.losses import LossSpec
from kaggle_kit.tasks.metrics import Metric

CALLS = {"loss": 0}


class SquaredHinge(nn.Module):
    def forward(self, out, target):
        CALLS["loss"] += 1
        return torch.clamp(1 - (2 * target - 1) * out, min=0).pow(2).mean()


def brier(y_true, y_pred):
    return float(np.mean((y_pred - y_true) ** 2))


COMPETITION = Competition(
    name="ext-binary",
    title="An external binary task",
    kaggle_slug="ext-binary",
    schema=Schema(id_column="text_id", input_columns=("full_text",),
                  targets=(Target("good", kind="binary", classes=("no", "yes")),)),
    build_inputs=lambda df, ctx: df["full_text"].tolist(),
    input_formats=("essay",),
    metric=Metric("brier", greater_is_better=False, per_column=brier, kinds=("binary",)),
    default_loss="bce",
    fold_strategy=kfold,
    losses={"squared-hinge": LossSpec(SquaredHinge, torch.sigmoid, "squared hinge on -1/+1 labels",
                                      kinds=("binary",), bias="zero")},
)
'''


@pytest.fixture
def external_plugin(tmp_path, monkeypatch, ell_small_dir):
    """The plugin as an installed package would be: a module on sys.path, registered through the entry point
    group; plus its data (ELL essays, label: cohesion >= 3)."""
    package = tmp_path / "site" / "kit_ext_binary"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = EntryPoint(name="ext-binary", value="kit_ext_binary:COMPETITION", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry] if group == registry.ENTRY_POINT_GROUP else [])
    registry.all_competitions.cache_clear()
    data = tmp_path / "data"
    data.mkdir()
    ell = pd.read_csv(ell_small_dir / "train.csv")
    labels = np.where(ell["cohesion"] >= 3, "yes", "no")
    pd.DataFrame({"text_id": ell["text_id"], "full_text": ell["full_text"], "good": labels}).to_csv(
        data / "train.csv", index=False)
    test = pd.read_csv(ell_small_dir / "test.csv")
    test.to_csv(data / "test.csv", index=False)
    pd.DataFrame({"text_id": test["text_id"], "good": 0.5}).to_csv(data / "sample_submission.csv", index=False)
    yield data
    registry.all_competitions.cache_clear()


def test_an_external_plugin_trains_with_its_own_loss_and_metric(external_plugin, tiny_bert, tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_kit(capsys, "list")
    row = next(line for line in out.splitlines() if "ext-binary" in line)
    assert code == 0 and "| binary " in row.replace("│", "|") and "brier" in row

    code, _, err = run_kit(capsys, "train", "ext-binary", "--data", external_plugin, "--model", tiny_bert,
                           "--loss", "hinge", "--out", tmp_path / "refused")
    assert_one_line_error(code, err, "--loss 'hinge' is unknown", "cross-entropy, squared-hinge")

    plugin = importlib.import_module("kit_ext_binary")
    run = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ext-binary", "--data", external_plugin, "--model", tiny_bert, "--folds",
                           "2", "--epochs", "1", "--max-len", "32", "--batch-size", "8", "--loss", "squared-hinge",
                           "--out", run)
    assert code == 0, err
    assert plugin.CALLS["loss"] == 6  # 48 rows, 2 folds of 24 training rows, batches of 8: 3 steps per fold
    assert json.loads((run / "run_config.json").read_text())["loss"] == "squared-hinge"
    cv = json.loads((run / "cv.json").read_text())
    oof = pd.read_csv(run / "oof.csv")
    truth = (pd.read_csv(external_plugin / "train.csv")["good"] == "yes").to_numpy(float)
    assert cv["metric"] == "brier" and cv["greater_is_better"] is False
    assert cv["score"] == pytest.approx(np.mean((oof["good"].to_numpy() - truth) ** 2), abs=1e-6)
    assert oof["good"].between(0, 1).all()  # the plugin loss's link, a sigmoid
    curves = cv["classification_curves"]["good"]  # a binary run's curves, scored on the OOF rows as sklearn does
    assert curves["auc"] == pytest.approx(roc_auc_score(truth, oof["good"]), abs=1e-9)
    assert curves["average_precision"] == pytest.approx(average_precision_score(truth, oof["good"]), abs=1e-9)
    assert curves["positive_class"] == "yes" and sum(curves["reliability"]["count"]) == len(truth)
    assert {p.name for p in (run / "plots").iterdir()} == {"learning_curves.png", "roc_pr_curves.png",
                                                           "reliability.png", "confusion_matrix.png"}
    assert f"good: ROC AUC {curves['auc']:.4f}" in (run / "train.log").read_text()
    report = tmp_path / "report.html"
    code, _, err = run_kit(capsys, "report", run, "--data", external_plugin, "--out", report)
    assert code == 0, err
    html = report.read_text()
    assert "<h2>ROC and precision-recall curves</h2>" in html and "<h2>Reliability</h2>" in html
    assert f"<td>{curves['auc']:.4f}</td>" in html and "Predicted vs true" not in html

    out = tmp_path / "submission.csv"
    code, _, err = run_kit(capsys, "predict", "ext-binary", "--run", run, "--input", external_plugin / "test.csv",
                           "--output", out)
    assert code == 0, err
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["text_id", "good"] and sub["good"].between(0, 1).all()
