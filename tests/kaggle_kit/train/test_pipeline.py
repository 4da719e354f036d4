"""End to end on real ELL essays with a tiny random model: train -> run folder -> resume -> predict."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from kaggle_kit.device import pick_device
from kaggle_kit.fileio import sha256_file
from kaggle_kit.runs.folder import RunDir
from tests.helpers import interrupted_copy, run_kit

pytestmark = pytest.mark.e2e
TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


@pytest.fixture(scope="module")
def trained_run(ell_tiny_run):
    return ell_tiny_run


def test_run_folder_layout(trained_run, ell_small_dir):
    run = RunDir(trained_run)
    for path in (run.config, run.manifest, run.oof, run.cv, run.metrics, run.folds_csv, run.weights(0), run.weights(1),
                 run.tokenizer / "tokenizer.json", run.backbone / "config.json",
                 run.plots / "learning_curves.png", run.plots / "predicted_vs_true.png", trained_run / "train.log"):
        assert path.is_file(), path
    manifest = json.loads(run.manifest.read_text())
    assert manifest["status"] == "complete"
    assert manifest["data"]["train.csv"]["sha256"] == sha256_file(ell_small_dir / "train.csv")
    assert manifest["seed"] == 42 and manifest["versions"]["torch"]
    assert manifest["device"].startswith(pick_device("auto").type)  # cuda where there is one
    config = json.loads(run.config.read_text())
    assert config["pooling"] == "attention" and config["fgm_eps"] == 0.5
    assert not list(trained_run.rglob("*.tmp")) and not list(trained_run.rglob("*.bin"))
    assert not (run.plots / "roc_pr_curves.png").exists() and not (run.plots / "reliability.png").exists()
    assert "classification_curves" not in json.loads(run.cv.read_text())  # regression targets: no curves
    logged = (trained_run / "train.log").read_text()  # where the data came from, said before the folder existed
    assert f"training on {ell_small_dir / 'train.csv'} (48 rows; --data)" in logged
    assert logged.index("training on") < logged.index("run folder:")


def test_oof_has_every_row_once_and_cv_matches(trained_run, ell_small_dir):
    train = pd.read_csv(ell_small_dir / "train.csv")
    oof = pd.read_csv(trained_run / "oof.csv")
    assert list(oof.columns) == ["text_id", *TARGETS]
    assert list(oof["text_id"]) == list(train["text_id"])
    assert ((oof[TARGETS] >= 1) & (oof[TARGETS] <= 5)).all().all()
    cv = json.loads((trained_run / "cv.json").read_text())
    rmse = np.sqrt(((oof[TARGETS].to_numpy() - train[TARGETS].to_numpy()) ** 2).mean(axis=0))
    assert cv["score"] == pytest.approx(rmse.mean(), abs=1e-6)
    assert set(cv["folds"]) == {"fold0", "fold1"} and cv["metric"] == "MCRMSE"
    assert cv["n_oof"] == len(train)


def test_weights_are_plain_safetensors_of_the_whole_model(trained_run):
    state = load_file(str(trained_run / "fold0.safetensors"))
    assert any(k.startswith("backbone.") for k in state) and "fc.weight" in state


def test_same_seed_same_folds(trained_run, tmp_path, ell_small_dir, tiny_bert, capsys):
    again = tmp_path / "again"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--train-folds", "0", "--epochs", "1", "--max-len", "32", "--out", again)
    assert code == 0, err
    assert (again / "folds.csv").read_bytes() == (trained_run / "folds.csv").read_bytes()


def test_resume_skips_finished_folds_and_keeps_their_files(trained_run, tmp_path, capsys):
    run_copy = interrupted_copy(trained_run, tmp_path / "interrupted")
    fold0_hash = sha256_file(run_copy / "fold0.safetensors")

    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run_copy)
    assert code == 0, err
    assert "fold 0: already finished" in err
    assert sha256_file(run_copy / "fold0.safetensors") == fold0_hash
    assert (run_copy / "fold1.safetensors").is_file() and (run_copy / "cv.json").is_file()
    assert json.loads((run_copy / "manifest.json").read_text())["status"] == "complete"


def test_resume_without_out_continues_the_latest_unfinished_run(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_kit(capsys, "train", "ell", "--resume")
    assert code == 2 and "no unfinished run under runs/ell/" in err

    older = interrupted_copy(trained_run, tmp_path / "runs" / "ell" / "older")
    newer = interrupted_copy(trained_run, tmp_path / "runs" / "ell" / "newer")
    os.utime(older / "run_config.json", (1, 1))
    code, _, err = run_kit(capsys, "train", "ell", "--resume")
    assert code == 0, err
    assert (newer / "cv.json").is_file() and not (older / "cv.json").exists()


def test_train_refuses_to_overwrite_a_run(trained_run, ell_small_dir, tiny_bert, capsys):
    before = sha256_file(trained_run / "cv.json")
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--out", trained_run)
    assert code == 2 and "already holds a run" in err
    assert sha256_file(trained_run / "cv.json") == before


def test_predict_follows_sample_submission_order(trained_run, ell_small_dir, tmp_path, capsys):
    test = pd.read_csv(ell_small_dir / "test.csv")
    shuffled = tmp_path / "test.csv"
    test.iloc[::-1].to_csv(shuffled, index=False)
    (tmp_path / "sample_submission.csv").write_bytes((ell_small_dir / "sample_submission.csv").read_bytes())
    out = tmp_path / "submission.csv"
    code, _, err = run_kit(capsys, "predict", "ell", "--run", trained_run, "--input", shuffled, "--output", out)
    assert code == 0, err
    sub = pd.read_csv(out)
    sample = pd.read_csv(ell_small_dir / "sample_submission.csv")
    assert list(sub.columns) == list(sample.columns)
    assert list(sub["text_id"]) == list(sample["text_id"])
    assert ((sub[TARGETS] >= 1) & (sub[TARGETS] <= 5)).all().all() and not sub.isna().any().any()


def test_deberta_with_every_trainer_option(tmp_path, ell_small_dir, tiny_deberta, capsys):
    """The less common paths in one short run: DeBERTa-v2, a config file, gradient checkpointing, AWP,
    accumulation, weighted-layer pooling, SmoothL1, a linear schedule."""
    config = tmp_path / "cfg.yaml"
    config.write_text("pooling: weighted-layer\nloss: smoothl1\nscheduler: linear\ngrad_accum: 2\n"
                      "awp_lr: 0.1\nawp_start_epoch: 0\nepochs: 2\nreinit_layers: 1\nfreeze_embeddings: true\n")
    out = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_deberta, "--config", config,
                           "--folds", "3", "--train-folds", "1", "--max-len", "48", "--batch-size", "4",
                           "--grad-checkpointing", "--llrd", "0.9", "--threads", "1", "--out", out)
    assert code == 0, err
    saved = json.loads((out / "run_config.json").read_text())
    assert saved["pooling"] == "weighted-layer" and saved["grad_accum"] == 2 and saved["grad_checkpointing"] is True
    assert saved["threads"] == 1
    if pick_device("auto").type == "cpu":  # the CPU run really used one thread
        assert json.loads((out / "manifest.json").read_text())["device"] == "cpu (1 threads)"
    cv = json.loads((out / "cv.json").read_text())
    assert cv["folds_trained"] == [1] and np.isfinite(cv["score"])
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["epoch"].max() == 2 and metrics["val_score"].notna().sum() == 2
    oof = pd.read_csv(out / "oof.csv")
    folds = pd.read_csv(out / "folds.csv")
    assert set(oof["text_id"]) == set(folds.loc[folds["fold"] == 1, "text_id"])


def test_frozen_mode_saves_ridge_heads_that_predict_like_the_oof(tmp_path, ell_small_dir, tiny_bert, capsys):
    """The ridge head is stored as the model's output layer: predicting the validation rows from the saved
    fold weights must reproduce the OOF predictions computed from the cached features."""
    from kaggle_kit.predict.inference import predict_runs
    from kaggle_kit.registry import get_competition

    out = tmp_path / "frozen"
    # on the CPU at both ends: the check is exact there (a GPU's bf16 features would blur it)
    code, _, err = run_kit(capsys, "train", "ell", "--mode", "frozen", "--data", ell_small_dir, "--model", tiny_bert,
                           "--folds", "2", "--max-len", "64", "--device", "cpu", "--out", out)
    assert code == 0, err
    assert "fold 1: ridge alpha" in err
    oof = pd.read_csv(out / "oof.csv")
    folds = pd.read_csv(out / "folds.csv")
    train = pd.read_csv(ell_small_dir / "train.csv")
    for fold in (0, 1):
        ids = folds.loc[folds["fold"] == fold, "text_id"]
        rows = train[train["text_id"].isin(ids)].reset_index(drop=True)
        # predict with this fold's weights only
        predicted = predict_runs(get_competition("ell"), rows.astype(str), [out], folds=[[fold]], device="cpu")
        expected = oof.set_index("text_id").loc[rows["text_id"], TARGETS].to_numpy()
        assert np.allclose(predicted, expected, atol=1e-4)


def test_frozen_mode_rejects_trained_poolings(tmp_path, ell_small_dir, tiny_bert, capsys):
    code, _, err = run_kit(capsys, "train", "ell", "--mode", "frozen", "--pooling", "attention", "--data",
                           ell_small_dir, "--model", tiny_bert, "--folds", "2", "--out", tmp_path / "r")
    assert code == 2 and "--mode frozen needs a pooling without trained weights" in err
    assert not (tmp_path / "r").exists()


def test_label_calibration_is_saved_where_it_gains_and_removed_where_it_does_not(tmp_path):
    """A label-token run's OOF calibration: written as postprocess.json with the cross-fitted score when adopted;
    a postprocess.json left by an earlier finalize is removed when it no longer gains."""
    from types import SimpleNamespace

    from kaggle_kit.registry import get_competition
    from kaggle_kit.train.pipeline import fit_label_calibration

    comp = get_competition("ell")
    rng = np.random.default_rng(0)
    pred = rng.normal(3.0, 0.5, size=(800, 6))
    truth = np.clip(np.round((pred + rng.normal(0, 0.3, size=pred.shape)) * 2) / 2, 1, 5)
    folds = np.arange(800) % 4
    run = SimpleNamespace(postprocess=tmp_path / "postprocess.json")
    squeezed = 3.0 + (pred - 3.0) * 0.5
    before = comp.metric(truth, squeezed, comp.schema.targets)
    record = fit_label_calibration(run, comp, squeezed, truth, folds, before)
    assert record["name"] == "calibration" and run.postprocess.is_file()
    assert record["score_after_crossfit"] < before.score - 0.05
    assert json.loads(run.postprocess.read_text())["state"] == record["state"]
    assert fit_label_calibration(run, comp, truth, truth, folds, comp.metric(truth, truth, comp.schema.targets)) is None
    assert not run.postprocess.exists()
