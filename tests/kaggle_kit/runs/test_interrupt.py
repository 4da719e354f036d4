"""Honest status with a real `kit train` process: SIGINT ends it as `interrupted` with one line, SIGKILL leaves a
`running` manifest that `kit runs` shows as dead; `--resume` finishes either."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kaggle_kit.runs.folder import RunDir
from tests.conftest import REPO
from tests.helpers import run_kit

pytestmark = pytest.mark.e2e


def start_training(out, ell_small_dir, tiny_bert):
    """A tiny run long enough to be killed mid-fold: 2 folds of 10 epochs of 2 steps on 24 essays, a validation
    after each epoch; the kill comes after the first one."""
    command = [sys.executable, "-m", "kaggle_kit", "train", "ell", "--data", str(ell_small_dir), "--model",
               str(tiny_bert), "--folds", "2", "--epochs", "10", "--max-len", "32", "--batch-size", "8",
               "--max-train-samples", "24", "--threads", "1", "--out", str(out)]
    # A suite started as a background job inherits SIGINT ignored (bash does that to background jobs), and Python
    # then keeps it ignored; the child gets the default disposition back, as a process started from a terminal has.
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_training(process, run, timeout=180):
    """Until the first validation of fold 0 is on disk: the process is inside the fold loop."""
    deadline = time.monotonic() + timeout
    while not run.fold_log(0).is_file():
        if process.poll() is not None:
            pytest.fail(f"training ended early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("training did not reach its first validation in time")
        time.sleep(0.05)
    assert json.loads(run.manifest.read_text())["status"] == "running"


def listed_status(capsys, root, name):
    code, out, err = run_kit(capsys, "runs", "--root", root, "--json")
    assert code == 0, err
    return {r["name"]: r for r in json.loads(out)}[name]


@pytest.fixture(scope="module")
def sigint_run(tmp_path_factory, ell_small_dir, tiny_bert):
    """`kit train` in a subprocess, sent SIGINT (what Ctrl-C sends) during fold 0: (exit code, stderr, run)."""
    root = tmp_path_factory.mktemp("sigint") / "runs"
    run = RunDir(root / "ell" / "sigint")
    process = start_training(run.path, ell_small_dir, tiny_bert)
    wait_for_training(process, run)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr, run


def test_sigint_marks_the_run_interrupted_and_resume_finishes_it(sigint_run, capsys):
    code, stderr, run = sigint_run
    assert code == 130, stderr
    assert "Traceback" not in stderr
    manifest = json.loads(run.manifest.read_text())
    assert manifest["status"] == "interrupted" and manifest["sessions"][-1]["outcome"] == "interrupted"
    assert manifest["sessions"][-1]["ended"] and not run.fold_done(1)
    root = run.path.parent.parent
    assert listed_status(capsys, root, "sigint")["status"] == "interrupted"

    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run.path)
    assert code == 0, err
    manifest = json.loads(run.manifest.read_text())
    assert manifest["status"] == "complete" and run.cv.is_file()
    assert [s["outcome"] for s in manifest["sessions"]] == ["interrupted", "complete"]
    assert listed_status(capsys, root, "sigint")["status"] == "complete"


def test_ctrl_c_ends_with_the_interrupted_line(sigint_run):
    _, stderr, run = sigint_run
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith("interrupted:") and str(run.path) in last, stderr  # no progress bar redrawn after it


def test_sigkill_leaves_a_dead_run_that_resume_picks_up(tmp_path, ell_small_dir, tiny_bert, capsys, monkeypatch):
    out = tmp_path / "runs" / "ell" / "sigkill"
    run = RunDir(out)
    process = start_training(out, ell_small_dir, tiny_bert)
    wait_for_training(process, run)
    process.kill()
    process.communicate(timeout=60)
    assert json.loads(run.manifest.read_text())["status"] == "running"  # nothing could update it
    listed = listed_status(capsys, tmp_path / "runs", "sigkill")
    assert listed["status"] == "dead" and listed["folds_done"] < 2

    monkeypatch.chdir(tmp_path)  # `--resume` alone continues the latest unfinished run under runs/ell/
    code, _, err = run_kit(capsys, "train", "ell", "--resume")
    assert code == 0, err
    manifest = json.loads(run.manifest.read_text())
    assert manifest["status"] == "complete" and len(manifest["sessions"]) == 2
    assert manifest["sessions"][0]["outcome"] is None and manifest["sessions"][1]["outcome"] == "complete"
    assert listed_status(capsys, tmp_path / "runs", "sigkill")["status"] == "complete"
