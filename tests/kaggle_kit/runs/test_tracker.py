"""Trackers for real, offline, on tiny runs: what each one holds afterwards is read back with its own reader.
Without a tracker nothing changes; a missing extra is one line before the run starts; a tracker that fails
mid-run is switched off and the run finishes."""

import json
import logging

import pandas as pd
import pytest

from kaggle_kit.config import TrainConfig
from kaggle_kit.errors import KitError
from kaggle_kit.runs import tracker as tracker_mod
from kaggle_kit.train.pipeline import train

pytestmark = pytest.mark.e2e


@pytest.fixture
def tiny_config(ell_small_dir, tiny_bert, monkeypatch):
    """A tiny 2-fold config with `tracker` set."""

    def make(kind, **overrides):
        settings = dict(competition="ell", data=str(ell_small_dir), model=str(tiny_bert), folds=2,
                        train_folds=[0, 1], epochs=1, max_len=32, batch_size=8, eval_every=2, threads=1)
        return TrainConfig(**{**settings, **overrides, "tracker": kind})

    return make


def metrics_rows(run):
    return pd.read_csv(run / "metrics.csv")


def test_tensorboard_holds_steps_folds_cv_and_plots(tmp_path, tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    result = train(tiny_config("tensorboard"), run)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    scalars = events.Tags()["scalars"]
    metrics = metrics_rows(run)
    for fold in (0, 1):
        steps = metrics[(metrics["fold"] == fold) & metrics["train_loss"].notna()]
        logged = events.Scalars(f"fold{fold}/train_loss")
        assert [e.step for e in logged] == steps["step"].tolist()
        assert [e.value for e in logged] == pytest.approx(steps["train_loss"].tolist(), rel=1e-5)
        validations = metrics[metrics["fold"] == fold]["val_score"].notna().sum()
        assert len(events.Scalars(f"fold{fold}/val_score")) == validations
        assert events.Scalars(f"cv/fold{fold}")[0].value == pytest.approx(result.cv["folds"][f"fold{fold}"]["score"])
    assert events.Scalars("cv/score")[0].value == pytest.approx(result.cv["score"])
    assert "cv/cohesion" in scalars
    assert {"plots/learning_curves.png", "plots/predicted_vs_true.png"} <= set(events.Tags()["images"])
    assert json.loads((run / "manifest.json").read_text())["tracker"] == {"kind": "tensorboard", "run_id": None}


def test_mlflow_file_store_in_the_run_folder(tmp_path, monkeypatch, tiny_config):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # restored after the test (the tracker sets it too)
    run = tmp_path / "ml"
    result = train(tiny_config("mlflow", lr=3e-5), run)
    run_id = json.loads((run / "manifest.json").read_text())["tracker"]["run_id"]
    client = MlflowClient(tracking_uri=(run / "mlruns").as_uri())
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED" and logged.data.tags["kit.status"] == "complete"
    assert logged.data.params["lr"] == "3e-05" and logged.data.params["pooling"] == "mean"
    assert logged.data.metrics["cv/score"] == pytest.approx(result.cv["score"])
    assert logged.data.metrics["cv/fold1"] == pytest.approx(result.cv["folds"]["fold1"]["score"])
    metrics = metrics_rows(run)
    steps = metrics[(metrics["fold"] == 0) & metrics["train_loss"].notna()]
    history = sorted(client.get_metric_history(run_id, "fold0/train_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == steps["step"].tolist()
    assert [m.value for m in history] == pytest.approx(steps["train_loss"].tolist(), rel=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"cv.json", "oof.csv", "metrics.csv", "run_config.json", "manifest.json", "train.log", "plots",
            "folds"} <= artifacts
    assert not any(a.endswith(".safetensors") or a in ("tokenizer", "backbone", "mlruns") for a in artifacts)
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {"plots/learning_curves.png",
                                                                       "plots/predicted_vs_true.png"}


def test_wandb_offline_run_in_the_run_folder(tmp_path, monkeypatch, tiny_config):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "wb"
    result = train(tiny_config("wandb"), run)
    run_id = json.loads((run / "manifest.json").read_text())["tracker"]["run_id"]
    offline = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1, list((run / "wandb").iterdir())
    records = (offline[0] / f"run-{run_id}.wandb").read_bytes()  # protobuf records: keys are stored as text
    for key in (b"fold0/train_loss", b"fold1/val_score", b"fold0/step", b"cv/score", b"kit/status", b"pooling"):
        assert key in records, key
    assert f"{result.cv['score']}".encode()[:8] in records
    saved = offline[0] / "files"
    assert (saved / "cv.json").is_file() and (saved / "plots" / "learning_curves.png").is_file()
    assert not list(saved.rglob("*.safetensors"))


def test_missing_extra_is_one_line_before_anything_is_written(tmp_path, monkeypatch, tiny_config):
    monkeypatch.setattr(tracker_mod, "installed", lambda module: module != "mlflow")
    missing = r"--tracker mlflow: mlflow is not installed: pip install 'kaggle-kit\[mlflow\]'"
    with pytest.raises(KitError, match=missing):
        train(tiny_config("mlflow"), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_an_unknown_tracker_is_refused_by_the_setting(tmp_path, capsys, ell_small_dir, tiny_bert):
    from tests.helpers import assert_one_line_error, run_kit

    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--tracker",
                           "neptune", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "--tracker: 'neptune' is unknown; choose one of: mlflow, wandb, tensorboard")
    assert not (tmp_path / "r").exists()


def test_tracker_from_the_command_line(tmp_path, capsys, ell_small_dir, tiny_bert):
    from tests.helpers import run_kit

    run = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--train-folds", "0", "--epochs", "1", "--max-len", "32", "--tracker", "tensorboard",
                           "--out", run)
    assert code == 0, err
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))


def test_a_failing_tracker_is_switched_off_and_the_run_finishes(tmp_path, monkeypatch, caplog, tiny_config):
    def broken(self, fold, step, values):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(tracker_mod.TensorBoardTracker, "log_metrics", broken)
    run = tmp_path / "r"
    with caplog.at_level(logging.WARNING):
        result = train(tiny_config("tensorboard", train_folds=[0]), run)
    assert result.cv["folds_trained"] == [0]
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
    warnings = [r.getMessage() for r in caplog.records if "tracker failed" in r.getMessage()]
    assert warnings == ["tensorboard tracker failed (ConnectionError: tracking server went away); the run goes on "
                        "without it"]
