"""Feedback Prize - Predicting Effective Arguments on a derived fixture (real ELL essays, labels derived as
tests/derived_data.py says): 3-class log loss, essays read from train/ and test/, folds grouped by essay,
train -> predict -> bundle (with its offline check) -> simulate."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.competition import InputContext
from kaggle_kit.data.load import load_test, load_train
from kaggle_kit.errors import KitError
from kaggle_kit.registry import get_competition
from kaggle_kit.tasks.metrics import LOG_LOSS
from tests.helpers import assert_one_line_error, run_kit

FBE = get_competition("fbe")
CLASSES = ["Ineffective", "Adequate", "Effective"]


def test_labels_are_encoded_in_the_declared_class_order(fbe_small_dir):
    raw = pd.read_csv(fbe_small_dir / "train.csv")
    df = load_train(FBE, fbe_small_dir)
    expected = raw["discourse_effectiveness"].map({c: i for i, c in enumerate(CLASSES)})
    assert np.array_equal(df["discourse_effectiveness"].to_numpy(), expected.to_numpy(dtype=float))


def test_input_is_type_text_and_the_essay_of_the_rows_split(fbe_small_dir):
    train = load_train(FBE, fbe_small_dir).head(2)
    ctx = InputContext(sep_token="[SEP]", input_format="type-text-essay", seed=0, data_dir=fbe_small_dir)
    essay = " ".join((fbe_small_dir / "train" / f"{train['essay_id'].iat[0]}.txt").read_text().split())
    first = FBE.build_inputs(train, ctx)[0]
    assert first == f"{train['discourse_type'].iat[0]} [SEP] {train['discourse_text'].iat[0]} [SEP] {essay}"
    short = InputContext(sep_token="</s>", input_format="type-text", seed=0, data_dir=fbe_small_dir)
    second = train.iloc[1]
    assert FBE.build_inputs(train, short)[1] == f"{second['discourse_type']} </s> {second['discourse_text']}"
    test = load_test(FBE, fbe_small_dir / "test.csv")
    at_test = InputContext(sep_token="[SEP]", input_format="type-text-essay", seed=0, data_dir=fbe_small_dir,
                           split="test")
    essay = " ".join((fbe_small_dir / "test" / f"{test['essay_id'].iat[0]}.txt").read_text().split())
    assert FBE.build_inputs(test, at_test)[0].endswith(essay)


def test_an_unknown_label_names_the_row_and_the_classes(fbe_small_dir, tmp_path):
    shutil.copytree(fbe_small_dir, tmp_path / "d")
    df = pd.read_csv(tmp_path / "d" / "train.csv", dtype=str, keep_default_na=False)
    df.loc[3, "discourse_effectiveness"] = "Excellent"
    df.to_csv(tmp_path / "d" / "train.csv", index=False)
    with pytest.raises(KitError, match=rf"row 4 \(discourse_id={df.loc[3, 'discourse_id']}\), column "
                                       r"'discourse_effectiveness': label 'Excellent' is not one of the classes "
                                       r"\(Ineffective, Adequate, Effective\)"):
        load_train(FBE, tmp_path / "d")


def test_a_missing_essay_is_one_line_before_anything_is_written(fbe_small_dir, tiny_bert, tmp_path, capsys):
    shutil.copytree(fbe_small_dir, tmp_path / "d")
    df = pd.read_csv(tmp_path / "d" / "train.csv", dtype=str)
    (tmp_path / "d" / "train" / f"{df.loc[0, 'essay_id']}.txt").unlink()
    code, _, err = run_kit(capsys, "train", "fbe", "--data", tmp_path / "d", "--model", tiny_bert, "--folds", "2",
                           "--out", tmp_path / "run")
    assert_one_line_error(code, err, f"train/{df.loc[0, 'essay_id']}.txt: file not found",
                          f"row 1 (discourse_id={df.loc[0, 'discourse_id']}), column 'essay_id'")
    assert not (tmp_path / "run").exists()


def test_a_regression_loss_is_refused_for_a_multiclass_target(fbe_small_dir, tiny_bert, tmp_path, capsys):
    code, _, err = run_kit(capsys, "train", "fbe", "--data", fbe_small_dir, "--model", tiny_bert, "--loss", "rmse",
                           "--out", tmp_path / "run")
    assert_one_line_error(code, err, "--loss rmse: trains regression, binary targets",
                          "'discourse_effectiveness' is multiclass", "cross-entropy")
    assert not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_train_writes_class_probabilities_grouped_folds_and_calibration(fbe_tiny_run, fbe_small_dir):
    train = pd.read_csv(fbe_small_dir / "train.csv")
    folds = pd.read_csv(fbe_tiny_run / "folds.csv").merge(train, on="discourse_id")
    assert (folds.groupby("essay_id")["fold"].nunique() == 1).all() and set(folds["fold"]) == {0, 1}
    oof = pd.read_csv(fbe_tiny_run / "oof.csv")
    assert list(oof.columns) == ["discourse_id", *CLASSES] and list(oof["discourse_id"]) == list(train["discourse_id"])
    probs = oof[CLASSES].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5) and (probs > 0).all()
    truth = train["discourse_effectiveness"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()[:, None]
    cv = json.loads((fbe_tiny_run / "cv.json").read_text())
    assert cv["metric"] == "log-loss"
    assert cv["score"] == pytest.approx(LOG_LOSS(truth, probs, FBE.schema.targets).score, abs=1e-6)
    # the train-prior baseline is the log loss of the training class frequencies: about ln 3 on balanced classes
    assert 1.0 < cv["baseline_train_mean"]["score"] < 1.2
    post = cv["postprocess"]
    assert post["name"] == "temperature" and post["score_after"] <= post["score_before"] + 1e-12
    assert post["score_after_crossfit"] is not None
    recorded = json.loads((fbe_tiny_run / "run_config.json").read_text())
    assert recorded["loss"] == "cross-entropy"
    assert recorded["targets"] == [{"name": "discourse_effectiveness", "kind": "multiclass", "classes": CLASSES}]
    state = json.loads((fbe_tiny_run / "postprocess.json").read_text())
    assert state["name"] == "temperature" and state["state"] == post["state"]



@pytest.mark.e2e
def test_train_plots_one_vs_rest_curves_and_reliability_not_a_regression_scatter(fbe_tiny_run, fbe_small_dir):
    """The AUCs cv.json records (and the plots show) are scikit-learn's on the OOF rows; no RMSE scatter."""
    from sklearn.metrics import roc_auc_score

    from kaggle_kit.runs import plots

    names = {p.name for p in (fbe_tiny_run / "plots").iterdir()}
    assert names == {plots.LEARNING_CURVES, plots.ROC_PR_CURVES, plots.RELIABILITY, plots.CONFUSION_MATRIX}
    train = pd.read_csv(fbe_small_dir / "train.csv")
    labels = train["discourse_effectiveness"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    probs = pd.read_csv(fbe_tiny_run / "oof.csv")[CLASSES].to_numpy()
    record = json.loads((fbe_tiny_run / "cv.json").read_text())["classification_curves"]["discourse_effectiveness"]
    for i, name in enumerate(CLASSES):
        assert record["per_class"][name]["auc"] == pytest.approx(roc_auc_score(labels == i, probs[:, i]), abs=1e-9)
    assert record["auc_macro"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"), abs=1e-6)
    assert sum(record["reliability"]["count"]) == len(train)
    log = (fbe_tiny_run / "train.log").read_text()
    assert f"discourse_effectiveness: ROC AUC (macro) {record['auc_macro']:.4f}" in log

@pytest.mark.e2e
def test_predict_writes_the_sample_submissions_probability_columns(fbe_tiny_run, fbe_small_dir, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    code, _, err = run_kit(capsys, "predict", "fbe", "--run", fbe_tiny_run, "--input", fbe_small_dir / "test.csv",
                           "--output", out)
    assert code == 0, err
    sub, sample = pd.read_csv(out), pd.read_csv(fbe_small_dir / "sample_submission.csv")
    assert list(sub.columns) == list(sample.columns) == ["discourse_id", *CLASSES]
    assert list(sub["discourse_id"]) == list(sample["discourse_id"])
    assert np.allclose(sub[CLASSES].sum(axis=1), 1, atol=1e-6)


@pytest.mark.e2e
def test_a_plugin_that_reorders_its_classes_still_reads_an_old_runs_probabilities_right(fbe_tiny_run, fbe_small_dir,
                                                                                        tmp_path, capsys,
                                                                                        monkeypatch):
    import dataclasses

    from kaggle_kit import registry

    args = ("predict", "fbe", "--run", fbe_tiny_run, "--input", fbe_small_dir / "test.csv", "--sample-submission",
            fbe_small_dir / "sample_submission.csv")
    code, _, err = run_kit(capsys, *args, "--output", tmp_path / "before.csv")
    assert code == 0, err
    target = dataclasses.replace(FBE.schema.targets[0], classes=("Effective", "Ineffective", "Adequate"))
    edited = dataclasses.replace(FBE, schema=dataclasses.replace(FBE.schema, targets=(target,)))
    comps = dict(registry.all_competitions(), fbe=edited)
    monkeypatch.setattr(registry, "all_competitions", lambda: comps)
    code, _, err = run_kit(capsys, *args, "--output", tmp_path / "after.csv")
    assert code == 0, err
    before, after = pd.read_csv(tmp_path / "before.csv"), pd.read_csv(tmp_path / "after.csv")
    assert np.abs(before[CLASSES].to_numpy() - after[CLASSES].to_numpy()).max() <= 1e-9
    renamed = dataclasses.replace(target, classes=("Effective", "Ineffective", "Okay"))
    comps["fbe"] = dataclasses.replace(FBE, schema=dataclasses.replace(FBE.schema, targets=(renamed,)))
    code, _, err = run_kit(capsys, *args, "--output", tmp_path / "renamed.csv")
    assert_one_line_error(code, err, "trained on the classes Ineffective, Adequate, Effective",
                          "the plugin now has Effective, Ineffective, Okay")


@pytest.mark.e2e
def test_bundle_checks_offline_and_simulate_equals_predict(fbe_tiny_run, fbe_small_dir, image_packages_of_this_env,
                                                           tmp_path, capsys):
    """The bundle's own check poses training rows as test rows (their essays copied to test/); simulate lays
    out the competition folder with test.csv's essays in test/, as Kaggle mounts it."""
    code, _, err = run_kit(capsys, "bundle", "fbe", "--run", fbe_tiny_run, "--owner", "kit-tester", "--out",
                           tmp_path / "bundles", "--image-packages", image_packages_of_this_env)
    assert code == 0, err
    assert "simulate: valid submission, 8 rows, equal to `kit predict`" in err
    bundle = next((tmp_path / "bundles").iterdir())
    assert (bundle / "dataset" / "models" / "fbe-tiny" / "postprocess.json").is_file()
    simulated = tmp_path / "simulated.csv"
    code, _, err = run_kit(capsys, "simulate", "--bundle", bundle, "--data", fbe_small_dir, "--output", simulated)
    assert code == 0, err
    predicted = tmp_path / "predicted.csv"
    code, _, err = run_kit(capsys, "predict", "fbe", "--run", fbe_tiny_run, "--input", fbe_small_dir / "test.csv",
                           "--output", predicted, "--device", "cpu")  # the simulated notebook runs on the CPU
    assert code == 0, err
    sim, pred = pd.read_csv(simulated), pd.read_csv(predicted)
    assert list(sim.columns) == list(pred.columns)
    assert np.abs(sim[CLASSES].to_numpy() - pred[CLASSES].to_numpy()).max() <= 1e-6


def _fake_run(folder, fbe_small_dir, probs):
    """A finished FBE run as `kit ensemble` reads it: its settings and its OOF class probabilities."""
    folder.mkdir()
    (folder / "run_config.json").write_text(json.dumps({"competition": "fbe", "data": str(fbe_small_dir)}))
    ids = pd.read_csv(fbe_small_dir / "train.csv")["discourse_id"]
    pd.DataFrame(probs, columns=CLASSES).assign(discourse_id=ids)[["discourse_id", *CLASSES]].to_csv(
        folder / "oof.csv", index=False)
    return folder


def test_hill_climbing_blends_class_probabilities_and_recalibrates_the_blend(fbe_small_dir, tmp_path):
    from kaggle_kit.predict.ensemble_file import blend_predictions, fit_ensemble

    truth = load_train(FBE, fbe_small_dir)["discourse_effectiveness"].to_numpy(dtype=int)
    rng = np.random.default_rng(0)
    sharp = np.eye(3)[truth] * 0.6 + 0.1 + rng.uniform(0, 0.05, (len(truth), 3))  # informative
    noise = rng.dirichlet(np.ones(3), size=len(truth))  # uninformative
    runs = [_fake_run(tmp_path / "good", fbe_small_dir, sharp / sharp.sum(axis=1, keepdims=True)),
            _fake_run(tmp_path / "noise", fbe_small_dir, noise)]
    fit = fit_ensemble(FBE, runs, max_steps=6, chunks=3)
    weights = fit.data["weights"]["*"]
    assert weights[0] > weights[1]  # one weight list: log loss is one score over the 3 probability columns
    blend = blend_predictions([pd.read_csv(r / "oof.csv")[CLASSES].to_numpy() for r in runs], fit.data["weights"],
                              FBE.schema.target_names, FBE.schema.targets)
    assert np.allclose(blend.sum(axis=1), 1.0)
    post = fit.data["postprocess"]
    assert post["name"] == "temperature" and post["blend_after"] <= fit.data["oof"]["blend"] + 1e-12


def test_kit_data_check_reads_each_csvs_essays_from_its_own_folder(fbe_small_dir):
    """`kit data fbe` checks the unpacked folder by building inputs: test.csv's essays are only in test/."""
    from kaggle_kit.data.download import check_files

    counts = check_files(FBE, fbe_small_dir)
    assert counts["test.csv"] == len(pd.read_csv(fbe_small_dir / "test.csv")) and counts["train.csv"] > 100
