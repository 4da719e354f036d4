"""What the notebook runs: the manifest check, the deadline guard, and the submission it always writes."""

import shutil

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.predict.inference import predict_runs
from kaggle_kit.registry import get_competition
from kaggle_kit.ship.kaggle_runtime import DeadlineGuard, run_submission, submission_problems, verify_files

pytestmark = pytest.mark.e2e
TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


@pytest.fixture
def dataset_copy(ell_tiny_bundle, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(ell_tiny_bundle / "dataset", copy)
    return copy


def test_intact_bundle_passes(ell_tiny_bundle, capsys):
    manifest = verify_files(str(ell_tiny_bundle / "dataset"))
    assert manifest["competition"] == "ell"
    assert "files match manifest.json" in capsys.readouterr().out


def test_tampered_weights_are_caught(dataset_copy):
    weights = dataset_copy / "models" / "ell-tiny" / "fold1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte
    weights.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=r"models/ell-tiny/fold1.safetensors does not match manifest.json"):
        verify_files(str(dataset_copy))


def test_missing_file_is_caught(dataset_copy):
    (dataset_copy / "models" / "ell-tiny" / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(RuntimeError, match=r"models/ell-tiny/tokenizer/tokenizer.json is missing"):
        verify_files(str(dataset_copy))


class FakeClock:
    """Every reading is `step` seconds after the previous one."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_guard_stops_only_when_the_next_fold_would_overrun():
    elapsed = {"now": 0.0}
    lines = []
    guard = DeadlineGuard(budget_seconds=10 * 3600, started_at=0.0, clock=lambda: elapsed["now"], log=lines.append)
    elapsed["now"] = 2.5 * 3600  # 0.5 h of setup, then one 2 h fold
    assert guard(1, 5, 2 * 3600)  # next fold ends at 4.5 h; all five would end at 10.5 h, but that is not a reason
    elapsed["now"] = 8.5 * 3600
    assert not guard(4, 5, 8 * 3600)  # the fifth would end at 10.5 h
    assert guard.stopped
    assert "projected" in lines[0] and "skipping the remaining 1 fold(s)" in lines[-1]


def test_deadline_skips_folds_and_still_writes_a_valid_submission(ell_tiny_bundle, ell_small_dir, tmp_path):
    """A clock that runs 1000 s per reading: after the first fold the budget (0.5 h) is spent."""
    out = tmp_path / "working" / "submission.csv"
    report = run_submission(ell_tiny_bundle / "dataset", ell_small_dir, out, budget_hours=0.5, started_at=0.0,
                            clock=FakeClock(1000.0), device="cpu")
    assert report["deadline_stopped"] is True
    assert report["folds_used"] == ["ell-tiny/fold0"] and report["folds_skipped"] == ["ell-tiny/fold1"]
    sub = pd.read_csv(out)
    sample = pd.read_csv(ell_small_dir / "sample_submission.csv")
    assert submission_problems(sub, sample, "text_id") == []
    comp = get_competition("ell")
    test = pd.read_csv(ell_small_dir / "test.csv")
    fold0_only = predict_runs(comp, test, [ell_tiny_bundle / "dataset" / "models" / "ell-tiny"], device="cpu",
                              folds=[[0]])
    order = [list(test["text_id"]).index(i) for i in sample["text_id"]]
    assert np.allclose(sub[TARGETS].to_numpy(), fold0_only[order], atol=1e-6)
    assert (tmp_path / "working" / "kit_run_report.json").is_file()


def test_submission_problems_name_the_issue():
    sample = pd.DataFrame({"text_id": ["a", "b"], "cohesion": [0.0, 0.0]})
    assert submission_problems(sample.copy(), sample, "text_id") == []
    assert "order differ" in submission_problems(sample.iloc[::-1].reset_index(drop=True), sample, "text_id")[0]
    assert "columns" in submission_problems(sample[["cohesion", "text_id"]], sample, "text_id")[0]
    with_nan = sample.assign(cohesion=[1.0, np.nan])
    assert "'cohesion' has missing values" in submission_problems(with_nan, sample, "text_id")[0]
