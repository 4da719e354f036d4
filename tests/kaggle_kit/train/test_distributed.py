"""Data-parallel training on CPU (gloo): two real processes under torchrun against one process with the same
global batch, and nothing written by the rank that is not 0."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from kaggle_kit.runs.folder import RunDir
from tests.helpers import assert_one_line_error, invoke, run_kit

pytestmark = pytest.mark.e2e

# FGM, AWP (from the first epoch), EMA and LLRD all on: with every backward pass of a step's last micro-step
# synchronised, they see the global batch's gradient as one process does. MSE: a mean over rows, so the ranks'
# average loss is exactly the global batch's (RMSE's square root of a mean would not split into halves).
SETTINGS = ("--folds", "2", "--train-folds", "0", "--epochs", "2", "--max-len", "48", "--eval-every", "2",
            "--pooling", "attention", "--llrd", "0.8", "--fgm-eps", "0.5", "--awp-lr", "0.5", "--awp-start-epoch", "0",
            "--ema", "0.9", "--loss", "mse", "--device", "cpu")

# Loaded by every Python process started with this folder on PYTHONPATH: in a rank other than 0 it records every
# write, rename, removal and new folder under the watched folder, and leaves the list in a file at exit.
SITECUSTOMIZE = '''
import atexit, os, sys
if os.environ.get("RANK", "0") != "0" and "KIT_TEST_WATCH" in os.environ:
    watched = os.path.abspath(os.environ["KIT_TEST_WATCH"])
    seen = []
    def _inside(path):
        return isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(watched)
    def _hook(event, args):
        if event == "open" and _inside(args[0]):
            mode, flags = args[1], args[2] or 0
            if (isinstance(mode, str) and set(mode) & set("wax+")) or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                seen.append(f"open {args[0]} {mode} {flags}")
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree") and _inside(args[0]):
            seen.append(f"{event} {args[0]}")
    sys.addaudithook(_hook)
    def _dump():
        with open(os.environ["KIT_TEST_WRITES"] + "." + os.environ["RANK"], "w") as handle:
            handle.write("\\n".join(seen))
    atexit.register(_dump)
'''


@pytest.fixture(scope="module")
def with_pseudo(tmp_path_factory, ell_dir):
    """main's batch plan through the DataLoader: 16 pseudo-labelled essays mixed into every epoch at weight 0.5
    (pseudo batches apart from labelled ones), then the full-train model (saved as fold 2, stopped at fold 0's best
    step as a fraction of its schedule)."""
    train = pd.read_csv(ell_dir / "train.csv", dtype=str, keep_default_na=False).iloc[60:76]
    path = tmp_path_factory.mktemp("ddp_pseudo") / "pseudo.csv"
    train.to_csv(path, index=False)
    return ("--pseudo", str(path), "--pseudo-weight", "0.5", "--full-train")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, ell_small_dir, tiny_bert, with_pseudo):
    out = tmp_path_factory.mktemp("ddp") / "one"
    assert invoke("train", "ell", "--data", ell_small_dir, "--model", tiny_bert, *SETTINGS, *with_pseudo,
                  "--batch-size", "8", "--threads", "1", "--out", out) == 0
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, ell_small_dir, tiny_bert, with_pseudo):
    """`kit train --nproc-per-node 2`: the shorthand that launches torchrun, each rank with a 4-row batch."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = root / "two"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "site"), os.environ.get("PYTHONPATH", "")]),
           "KIT_TEST_WATCH": str(out), "KIT_TEST_WRITES": str(root / "writes")}
    result = subprocess.run([sys.executable, "-m", "kaggle_kit", "train", "ell", "--data", str(ell_small_dir),
                             "--model", str(tiny_bert), *SETTINGS, *with_pseudo, "--batch-size", "4", "--threads", "2",
                             "--nproc-per-node", "2", "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, root / "writes.1", result.stderr


def test_two_processes_match_one_with_the_same_global_batch(one_process, two_processes):
    two, _, _ = two_processes
    steps_one = pd.read_csv(one_process / "metrics.csv")
    steps_two = pd.read_csv(two / "metrics.csv")
    # 2 epochs of 25 labelled rows (4 batches of 8) and 16 pseudo rows (2 batches): 6 steps and 2 evals each
    fold0_one, fold0_two = steps_one[steps_one["fold"] == 0], steps_two[steps_two["fold"] == 0]
    assert len(fold0_one) == len(fold0_two) == 2 * 6 + 4
    assert len(steps_one) == len(steps_two)
    for column in ("train_loss", "grad_norm", "val_score"):
        assert np.allclose(steps_one[column], steps_two[column], atol=1e-5, rtol=1e-5, equal_nan=True), column
    for fold in (0, 2):  # fold 2: the full-train model
        one_weights = load_file(str(one_process / f"fold{fold}.safetensors"))
        two_weights = load_file(str(two / f"fold{fold}.safetensors"))
        assert one_weights.keys() == two_weights.keys()
        assert max(float((one_weights[k] - two_weights[k]).abs().max()) for k in one_weights) < 1e-5, fold
    one_full, two_full = (json.loads((run / "folds" / "fold2.json").read_text()) for run in (one_process, two))
    assert one_full["full_train"] and one_full["n_pseudo"] == two_full["n_pseudo"] == 16
    assert one_full["best_step"] == two_full["best_step"] and one_full["total_steps"] == two_full["total_steps"]
    oof_one, oof_two = pd.read_csv(one_process / "oof.csv"), pd.read_csv(two / "oof.csv")
    assert list(oof_one["text_id"]) == list(oof_two["text_id"])
    assert np.allclose(oof_one.iloc[:, 1:], oof_two.iloc[:, 1:], atol=1e-5)


def test_the_effective_batch_is_printed_and_recorded(two_processes):
    two, _, stderr = two_processes
    assert "effective batch: 8 rows per optimizer step (batch size 4 x grad accum 1 x 2 processes)" in stderr
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["effective_batch_size"] == 8 and manifest["world_size"] == 2
    assert json.loads((two / "run_config.json").read_text())["world_size"] == 2
    assert manifest["status"] == "complete"


def test_rank_0_alone_writes(two_processes):
    two, rank1_writes, stderr = two_processes
    assert rank1_writes.is_file(), "the audit hook did not run in rank 1"
    assert rank1_writes.read_text() == ""
    assert stderr.count("finalized: oof.csv") == 1 and stderr.count("fold 0: 25 train") == 1
    assert stderr.count("full train: ") == 1


def test_resume_needs_the_same_number_of_processes(two_processes, tmp_path, capsys):
    """A plain `--resume` of this run relaunches 2 processes (the run records --nproc-per-node 2); one process
    would train with half the effective batch, so it is refused."""
    two, _, _ = two_processes
    run_copy = tmp_path / "copy"
    shutil.copytree(two, run_copy)
    for name in ("folds/fold0.json", "fold0.safetensors", "cv.json"):
        (run_copy / name).unlink()
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run_copy, "--nproc-per-node", "1")
    assert_one_line_error(code, err, "trained in 2 data-parallel process(es)", "--nproc-per-node 2")
    assert not RunDir(run_copy).weights(0).exists()
