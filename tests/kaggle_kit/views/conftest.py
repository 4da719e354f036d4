"""Five runs of two competitions under one root, as `kit runs`, `kit runs diff` and `kit report` see them:

    ell/a-attention   complete, 2/2 folds (the shared ell_tiny_run: attention pooling, FGM, EMA)
    ell/b-mean        complete, 1/1 folds (fold 0 of 2; mean pooling, lr 1e-4, max_len 48)
    ell/c-dead        a copy of a-attention killed during fold 1: manifest says running, its process is gone
    uspppm/d-bce      complete, 2/2 folds (BCE)
    uspppm/e-mse      complete, 1/1 folds (fold 0 of 2; MSE, lr 1e-4)

Tests must not modify these folders (copy them first).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import dead_pid, invoke


def killed_copy(run: Path, dest: Path) -> Path:
    """A copy of a finished 2-fold run as if SIGKILL hit it during fold 1."""
    shutil.copytree(run, dest)
    for name in ("folds/fold1.json", "folds/fold1_oof.csv", "fold1.safetensors", "oof.csv", "cv.json",
                 "metrics.csv"):
        (dest / name).unlink()
    shutil.rmtree(dest / "plots")
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest.update(status="running", finished=None)
    manifest["sessions"][-1].update(pid=dead_pid(), ended=None, outcome=None)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.fixture(scope="session")
def five_runs(tmp_path_factory, ell_tiny_run, ell_small_dir, uspppm_small_dir, tiny_bert) -> Path:
    root = tmp_path_factory.mktemp("five") / "runs"
    shutil.copytree(ell_tiny_run, root / "ell" / "a-attention")
    tiny = ["--model", tiny_bert, "--folds", "2", "--epochs", "1", "--threads", "1"]
    assert invoke("train", "ell", "--data", ell_small_dir, *tiny, "--train-folds", "0", "--max-len", "48",
                  "--batch-size", "8", "--lr", "1e-4", "--out", root / "ell" / "b-mean") == 0
    killed_copy(ell_tiny_run, root / "ell" / "c-dead")
    assert invoke("train", "uspppm", "--data", uspppm_small_dir, *tiny, "--max-len", "32", "--batch-size", "32",
                  "--out", root / "uspppm" / "d-bce") == 0
    assert invoke("train", "uspppm", "--data", uspppm_small_dir, *tiny, "--max-len", "32", "--batch-size", "32",
                  "--train-folds", "0", "--loss", "mse", "--lr", "1e-4", "--out", root / "uspppm" / "e-mse") == 0
    return root
