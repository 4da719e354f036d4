"""Run the real `kit` entry point in-process and capture its exit code and output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest


def invoke(*args) -> int:
    """Run `kit ARGS...` through the real entry point; return its exit code."""
    from kaggle_kit.cli import main

    old_argv = sys.argv
    sys.argv = ["kit", *map(str, args)]
    try:
        main()
        return 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old_argv


def run_kit(capsys, *args) -> tuple[int, str, str]:
    code = invoke(*args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("error:")]
    assert code == 2, err
    assert len(error_lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        if fragment not in error_lines[0]:
            pytest.fail(f"{fragment!r} not in {error_lines[0]!r}")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped: what a SIGKILLed run leaves in its manifest."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def same_weights_atol() -> float:
    """How far two predictions of the same weights on the same rows may differ. fp32 on the CPU agrees to
    rounding; on CUDA, inference runs under bf16/fp16 autocast, whose rounding depends on the batch's shape."""
    import torch

    return 2e-2 if torch.cuda.is_available() else 1e-5


class SteppingClock:
    """A clock for deadline tests: every reading is `step` seconds after the previous one (each fold, or each
    check, appears to take a fixed time)."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def interrupted_copy(trained_run, dest):
    """A copy of the run as if the process was killed during fold 1: its results and the final reports are
    missing, its manifest still says running, and its process is gone."""
    shutil.copytree(trained_run, dest)
    for name in ("folds/fold1.json", "folds/fold1_oof.csv", "fold1.safetensors", "oof.csv", "cv.json"):
        (dest / name).unlink()
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["status"] = "running"
    manifest["sessions"][-1].update(pid=dead_pid(), ended=None, outcome=None)
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def train_tiny_lora(capsys, competition: str, data, base, out, *flags, lora_r: int = 4, train_folds: str | None = "0",
                    max_len: int = 32):
    """`kit train` of a tiny decoder with LoRA adapters on two folds (only `train_folds` of them trained; None: both),
    one epoch, sized for a CPU; `flags` add to it (--head label-tokens). Asserts it succeeded and returns `out`."""
    folds = ("--train-folds", train_folds) if train_folds is not None else ()
    code, _, err = run_kit(capsys, "train", competition, "--data", data, "--model", base, "--lora-r", str(lora_r),
                           "--folds", "2", *folds, "--epochs", "1", "--max-len", str(max_len), "--batch-size", "16",
                           "--lr", "1e-3", "--threads", "1", "--out", out, *flags)
    assert code == 0, err
    return out


def fold_rows_as_test(data, run, comp_id: str, input_columns, fold: int, out):
    """The validation rows of `fold` in train.csv, written as out/test.csv (with their inputs only); returns them."""
    import pandas as pd

    train = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
    folds = pd.read_csv(run / "folds.csv", dtype={comp_id: str})
    rows = train[train[comp_id].isin(folds.loc[folds["fold"] == fold, comp_id])]
    out.mkdir()
    rows[[comp_id, *input_columns]].to_csv(out / "test.csv", index=False)
    return rows
