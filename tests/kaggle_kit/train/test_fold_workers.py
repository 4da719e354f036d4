"""Fold-parallel training: workers give the sequential run's OOF, pool once, and a killed worker's fold resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from kaggle_kit.fileio import sha256_file
from kaggle_kit.runs.folder import RunDir
from tests.helpers import assert_one_line_error, invoke, run_kit

pytestmark = pytest.mark.e2e
# ell_tiny_run's settings: that shared run (both folds in one process) is the sequential reference.
SETTINGS = ("--folds", "2", "--epochs", "1", "--max-len", "64", "--batch-size", "4", "--eval-every", "2",
            "--pooling", "attention", "--llrd", "0.8", "--fgm-eps", "0.5", "--ema", "0.9", "--device", "cpu")


@pytest.fixture(scope="module")
def sequential(ell_tiny_run, tmp_path_factory, ell_small_dir, tiny_bert):
    """ell_tiny_run, trained on the CPU unless this machine has a GPU: then a CPU run of its own."""
    if not torch.cuda.is_available():
        return ell_tiny_run
    out = tmp_path_factory.mktemp("folds") / "sequential"
    assert invoke("train", "ell", "--data", ell_small_dir, "--model", tiny_bert, *SETTINGS, "--out", out) == 0
    return out


def same_csv(a, b) -> bool:
    """Equal to float precision: the reference may use more CPU threads than a worker (summation order)."""
    left, right = pd.read_csv(a), pd.read_csv(b)
    return list(left.columns) == list(right.columns) and left.shape == right.shape and np.allclose(
        left.select_dtypes("number"), right.select_dtypes("number"), atol=1e-6, equal_nan=True) and (
        left.select_dtypes(exclude="number").equals(right.select_dtypes(exclude="number")))


def test_fold_workers_give_the_sequential_oof(sequential, ell_small_dir, tiny_bert, tmp_path, capsys):
    out = tmp_path / "workers"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, *SETTINGS,
                           "--threads", "2", "--fold-workers", "2", "--out", out)
    assert code == 0, err
    assert "worker pid" in err and "on cpu worker 1 (1 thread)" in err
    assert same_csv(out / "oof.csv", sequential / "oof.csv")
    assert same_csv(out / "metrics.csv", sequential / "metrics.csv")
    log = (out / "train.log").read_text()
    assert log.count("finalized: oof.csv") == 1, "the run must be pooled once, by the starting process"
    assert "fold 0: 25 train / 23 valid" in log and "fold 1: 23 train / 25 valid" in log  # the workers' lines
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    # one session, the starting process's: workers never write the manifest (their heartbeats would race)
    assert [s["outcome"] for s in manifest["sessions"]] == ["complete"]


def test_a_killed_worker_resumes_and_the_other_fold_is_untouched(sequential, ell_small_dir, tiny_bert, tmp_path,
                                                                  capsys):
    out = tmp_path / "killed"
    starter = subprocess.Popen(
        [sys.executable, "-m", "kaggle_kit", "train", "ell", "--data", str(ell_small_dir), "--model", str(tiny_bert),
         *SETTINGS, "--threads", "2", "--fold-workers", "2", "--out", str(out)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines, worker = [], None
    deadline = time.monotonic() + 300
    for line in starter.stderr:  # kill fold 1's worker once it holds the fold and starts training it
        lines.append(line)
        if "fold 1: worker pid" in line:
            worker = int(line.split("worker pid ")[1].split()[0])
        if "[fold 1] fold 1: 23 train / 25 valid" in line:
            os.kill(worker, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(lines)
    rest = starter.communicate(timeout=300)[1]
    err = "".join(lines) + rest
    assert starter.returncode == 2, err
    assert "error: fold(s) 1 did not finish (fold 1: was killed (SIGKILL))" in err
    assert f"kit train ell --resume --out {out}" in err
    run = RunDir(out)
    assert run.fold_done(0) and not run.fold_done(1) and not run.oof.exists()
    fold0 = {name: sha256_file(out / name) for name in ("fold0.safetensors", "folds/fold0.json", "folds/fold0_oof.csv")}

    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", out)
    assert code == 0, err
    assert "fold 0: already finished" in err
    assert {name: sha256_file(out / name) for name in fold0} == fold0
    assert same_csv(out / "oof.csv", sequential / "oof.csv")
    assert (out / "train.log").read_text().count("finalized: oof.csv") == 1
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_devices_name_gpus(ell_small_dir, tiny_bert, tmp_path, capsys):
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--device", "cpu",
                           "--fold-workers", "2", "--devices", "0,1", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "--devices 0,1: names GPUs, but this run trains on cpu")
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert,
                           "--fold-workers", "2", "--nproc-per-node", "2", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "--fold-workers 2 with --nproc-per-node 2: choose one")
    assert not (tmp_path / "x").exists()


def test_a_worker_trains_the_full_train_model_after_the_folds(sequential, ell_small_dir, tiny_bert, tmp_path, capsys):
    """--full-train with fold workers: the full-train model (fold 2) needs every fold's best step, so a worker
    trains it once the folds are in; it is the model a sequential run adds to the same folds."""
    import shutil

    from safetensors.torch import load_file

    out = tmp_path / "workers-full"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, *SETTINGS,
                           "--threads", "2", "--fold-workers", "2", "--full-train", "--out", out)
    assert code == 0, err
    assert "fold 2: worker pid" in err
    run = RunDir(out)
    assert run.finished_folds() == [0, 1, 2] and json.loads(run.fold_result(2).read_text())["full_train"]
    assert same_csv(out / "oof.csv", sequential / "oof.csv")
    log = (out / "train.log").read_text()
    assert log.count("full train: ") == 1 and log.count("finalized: oof.csv") == 1
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    reference = RunDir(tmp_path / "sequential-full")
    shutil.copytree(sequential, reference.path)
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", reference.path, "--full-train",
                           "--threads", "1")
    assert code == 0, err
    mine, theirs = load_file(str(run.weights(2))), load_file(str(reference.weights(2)))
    assert mine.keys() == theirs.keys()
    assert max(float((mine[k] - theirs[k]).abs().max()) for k in mine) < 1e-5
