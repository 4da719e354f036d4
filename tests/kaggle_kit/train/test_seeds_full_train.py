"""--seeds (one run per seed on shared folds) and --full-train (one more model on every row, averaged like a fold)."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from kaggle_kit.registry import get_competition
from kaggle_kit.runs.folder import RunDir
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e


def tiny_args(data, model):
    return ("--data", data, "--model", model, "--folds", "2", "--epochs", "1", "--max-len", "64", "--batch-size", "4",
            "--eval-every", "2")


def test_seeds_train_one_run_per_seed_on_the_same_folds(tmp_path, ell_small_dir, tiny_bert, capsys):
    code, out, err = run_kit(capsys, "train", "ell", *tiny_args(ell_small_dir, tiny_bert), "--seeds", "42,43",
                             "--out", tmp_path / "multi")
    assert code == 0, err
    runs = [RunDir(tmp_path / f"multi-s{s}") for s in (42, 43)]
    configs = [json.loads(r.config.read_text()) for r in runs]
    assert [c["seed"] for c in configs] == [42, 43] and [c["fold_seed"] for c in configs] == [42, 42]
    assert runs[0].folds_csv.read_text() == runs[1].folds_csv.read_text()
    oof = [pd.read_csv(r.oof) for r in runs]
    assert list(oof[0]["text_id"]) == list(oof[1]["text_id"])
    assert not np.allclose(oof[0].iloc[:, 1:].to_numpy(), oof[1].iloc[:, 1:].to_numpy())  # the seed acts
    scores = [json.loads(r.cv.read_text())["score"] for r in runs]
    assert "--seeds: CV MCRMSE per run" in out and f"{np.mean(scores):.4f}" in out
    assert all(f"{s:.4f}" in out for s in scores) and "multi-s43" in out


def test_seeds_refuses_bad_lists(tmp_path, capsys):
    code, _, err = run_kit(capsys, "train", "ell", "--seeds", "42", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "--seeds", "at least two")
    code, _, err = run_kit(capsys, "train", "ell", "--seeds", "42,a", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "--seeds", "whole numbers")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, ell_small_dir, tiny_bert):
    from tests.helpers import invoke

    out = tmp_path_factory.mktemp("runs") / "full"
    assert invoke("train", "ell", *tiny_args(ell_small_dir, tiny_bert), "--full-train", "--out", out) == 0
    return RunDir(out)


def test_full_train_trains_every_row_for_the_folds_median_best_step(full_run, ell_small_dir):
    assert full_run.finished_folds() == [0, 1, 2] and full_run.cv_folds() == [0, 1]
    record = json.loads(full_run.fold_result(2).read_text())
    folds = [json.loads(full_run.fold_result(f).read_text()) for f in (0, 1)]
    fraction = float(np.median([f["best_step"] / f["total_steps"] for f in folds]))
    assert record["full_train"] and record["n_train"] == 48 and record["n_valid"] == 0
    assert record["total_steps"] == math.ceil(48 / 4)  # every row, one epoch, batch 4
    assert record["best_step"] == max(1, round(fraction * record["total_steps"]))
    assert record["stop_fraction"] == pytest.approx(fraction, abs=1e-6)
    steps_logged = pd.read_csv(full_run.fold_log(2))["step"].max()
    assert steps_logged == record["best_step"]
    # no validation: the OOF and CV come from the CV folds only
    cv = json.loads(full_run.cv.read_text())
    assert set(cv["folds"]) == {"fold0", "fold1"} and cv["n_oof"] == 48
    assert not full_run.fold_oof(2).exists()
    assert json.loads(full_run.manifest.read_text())["status"] == "complete"
    trained, fold0 = load_file(str(full_run.weights(2))), load_file(str(full_run.weights(0)))
    assert not np.allclose(trained["fc.weight"].numpy(), fold0["fc.weight"].numpy())


def test_full_train_model_is_averaged_with_the_folds(full_run, ell_small_dir):
    from kaggle_kit.data.load import load_test
    from kaggle_kit.predict.inference import PredictionReport, predict_runs

    comp = get_competition("ell")
    test = load_test(comp, ell_small_dir / "test.csv")
    report = PredictionReport()
    every = predict_runs(comp, test, [full_run.path], report=report, device="cpu")
    assert [f for _, f in report.folds_used] == [0, 1, 2]
    members = [predict_runs(comp, test, [full_run.path], folds=[[f]], device="cpu") for f in (0, 1, 2)]
    assert np.allclose(every, np.clip(np.mean(members, axis=0), 1, 5), atol=1e-5)
    assert not np.allclose(every, predict_runs(comp, test, [full_run.path], folds=[[0, 1]], device="cpu"))


def test_full_train_bundles_and_simulates_like_a_fold(full_run, tmp_path, image_packages_of_this_env, ell_small_dir,
                                                      capsys):
    from kaggle_kit.ship.bundle import build_bundle, load_image_packages

    bundle = build_bundle(get_competition("ell"), [full_run.path], tmp_path, owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None)
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    assert manifest["runs"][0]["folds"] == [0, 1, 2]
    assert (bundle.dataset / manifest["runs"][0]["path"] / "fold2.safetensors").is_file()
    code, _, err = run_kit(capsys, "simulate", "--bundle", bundle.path, "--data", ell_small_dir, "--output",
                           tmp_path / "sim.csv")
    assert code == 0, err
    assert "inference full/fold2" in err
    code, _, err = run_kit(capsys, "predict", "ell", "--run", full_run.path, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "pred.csv")
    assert code == 0, err
    sim, pred = pd.read_csv(tmp_path / "sim.csv"), pd.read_csv(tmp_path / "pred.csv")
    assert np.abs(sim.iloc[:, 1:].to_numpy() - pred.iloc[:, 1:].to_numpy()).max() <= 1e-4


def test_resume_full_train_adds_the_model_to_a_finished_run(ell_tiny_run, tmp_path, capsys):
    run = RunDir(tmp_path / "copy")
    shutil.copytree(ell_tiny_run, run.path)
    before = run.oof.read_text()
    for fold, fraction in ((0, 0.25), (1, 0.5)):  # best validations early in the schedule: the full model stops early
        record = json.loads(run.fold_result(fold).read_text())
        record["best_step"] = round(fraction * record["total_steps"])
        run.fold_result(fold).write_text(json.dumps(record))
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run.path, "--full-train", "--threads", "1")
    assert code == 0, err
    assert run.finished_folds() == [0, 1, 2] and json.loads(run.config.read_text())["full_train"] is True
    full = json.loads(run.fold_result(2).read_text())
    assert full["stop_fraction"] == pytest.approx(0.375, abs=0.05)
    assert full["best_step"] == round(full["stop_fraction"] * full["total_steps"]) < full["total_steps"]
    assert pd.read_csv(run.fold_log(2))["step"].max() == full["best_step"]
    assert run.oof.read_text() == before  # the CV folds were not retrained
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run.path, "--no-full-train")
    assert_one_line_error(code, err, "--resume", "--full-train")
