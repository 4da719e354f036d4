"""Regression results stay put: the same seed gives the same OOF predictions as the kit did before classification
targets, per-target losses and fitted post-processing entered the trainer (commit 7f0a149).

The golden files are the oof.csv of these exact runs made with that commit's code on CPU (torch 2.13). Values
match to 1e-5: on the same machine they are equal to the byte, but the thread count alone moves them by up to
3e-7. Any change to what is trained (bias start, loss, link, batch order, metric-driven checkpoint choice) moves
them by far more. When a change is MEANT to alter training, regenerate both files and say why in the commit.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.device import pick_device
from tests.helpers import run_kit

pytestmark = pytest.mark.e2e
GOLDEN = Path(__file__).parent / "golden"


def _assert_same_oof(run: Path, golden: Path) -> None:
    now, then = pd.read_csv(run / "oof.csv", dtype=str), pd.read_csv(golden, dtype=str)
    assert list(now.columns) == list(then.columns)
    assert list(now.iloc[:, 0]) == list(then.iloc[:, 0])
    diff = np.abs(now.iloc[:, 1:].to_numpy(float) - then.iloc[:, 1:].to_numpy(float)).max()
    assert diff <= 1e-5, f"OOF predictions moved by {diff:.2e} from {golden.name}"


@pytest.mark.skipif(pick_device("auto").type != "cpu", reason="the golden OOF is a CPU run's; ell_tiny_run trains on "
                    "this machine's accelerator (the USPPPM golden test trains on the CPU everywhere)")
def test_ell_tiny_run_gives_the_same_oof_as_before(ell_tiny_run):
    _assert_same_oof(ell_tiny_run, GOLDEN / "ell_tiny_oof.csv")


def test_uspppm_tiny_run_gives_the_same_oof_as_before(uspppm_small_dir, tiny_bert, tmp_path, capsys):
    """BCE on [0, 1] scores: the sigmoid link and the logit-of-the-mean bias start."""
    code, _, err = run_kit(capsys, "train", "uspppm", "--data", uspppm_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--train-folds", "0", "--epochs", "1", "--max-len", "32", "--batch-size", "16",
                           "--device", "cpu", "--out", tmp_path / "run")
    assert code == 0, err
    _assert_same_oof(tmp_path / "run", GOLDEN / "uspppm_tiny_oof.csv")
