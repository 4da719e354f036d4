"""What the generated Kaggle notebook runs: check the bundle, predict within the time limit, write the submission.

The notebook imports this module from the installed kaggle-kit wheel, so Kaggle runs the same inference code as
`kit predict`. `verify_files` is the exception: it must run before the wheel is installed (the wheel is one of
the files it checks), so it uses only the standard library and the notebook carries a copy of its source.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

MANIFEST_NAME = "manifest.json"
REPORT_NAME = "kit_run_report.json"
KAGGLE_LIMIT_HOURS = 9.0
DEFAULT_BUDGET_HOURS = 8.5


def verify_files(dataset_dir):
    """Compare every file listed in the bundle's manifest.json with its recorded size and sha256."""
    import hashlib
    import json
    import os

    with open(os.path.join(dataset_dir, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    for name, expected in sorted(manifest["files"].items()):
        path = os.path.join(dataset_dir, name)
        if not os.path.isfile(path):
            raise RuntimeError(f"bundle check failed: {name} is missing from {dataset_dir}")
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        if os.path.getsize(path) != expected["size"] or digest.hexdigest() != expected["sha256"]:
            raise RuntimeError(f"bundle check failed: {name} does not match manifest.json (size or sha256 differs); "
                               "the dataset changed after `kit bundle`: rebuild and upload it again")
    print(f"bundle check: all {len(manifest['files'])} files match manifest.json")
    return manifest


@dataclass
class DeadlineGuard:
    """The `should_continue` callback of `predict_runs` that keeps a notebook inside Kaggle's time limit.

    After each fold it logs the projected finish of all remaining folds (mean fold time so far) and stops when
    even the next fold would end past the budget. Stopping as soon as the whole remainder overruns would throw
    away folds that still fit; the folds already done always make a valid submission.
    """

    budget_seconds: float
    started_at: float  # clock value at the notebook's start: installing and loading count against the limit
    clock: Callable[[], float] = time.time
    log: Callable[[str], None] = print
    stopped: bool = False

    def __call__(self, done: int, total: int, seconds: float) -> bool:
        elapsed = self.clock() - self.started_at
        per_fold = seconds / max(done, 1)
        remaining = total - done
        projected = elapsed + per_fold * remaining
        self.log(f"deadline guard: {done}/{total} folds done, {elapsed / 3600:.2f} h elapsed, all folds projected "
                 f"to end at {projected / 3600:.2f} h (budget {self.budget_seconds / 3600:.2f} h)")
        if elapsed + per_fold > self.budget_seconds:
            self.stopped = True
            self.log(f"deadline guard: the next fold would end at {(elapsed + per_fold) / 3600:.2f} h, past the "
                     f"budget; skipping the remaining {remaining} fold(s)")
            return False
        return True


def submission_problems(sub: pd.DataFrame, sample: pd.DataFrame, id_column: str) -> list[str]:
    """Why `sub` would be rejected as a submission for `sample` (empty when it is valid)."""
    problems = []
    if list(sub.columns) != list(sample.columns):
        problems.append(f"columns {list(sub.columns)} differ from sample_submission.csv's {list(sample.columns)}")
    if len(sub) != len(sample):
        problems.append(f"{len(sub)} rows, sample_submission.csv has {len(sample)}")
    elif id_column in sub.columns and list(sub[id_column].astype(str)) != list(sample[id_column].astype(str)):
        problems.append(f"the {id_column} values or their order differ from sample_submission.csv")
    values = sub.drop(columns=[id_column], errors="ignore")
    if values.isna().any().any():
        column = values.columns[values.isna().any()].tolist()[0]
        problems.append(f"column {column!r} has missing values (NaN)")
    return problems


def run_submission(dataset_dir: str | Path, competition_dir: str | Path, output_path: str | Path,
                   budget_hours: float = DEFAULT_BUDGET_HOURS, started_at: float | None = None,
                   clock: Callable[[], float] = time.time, device: str = "auto",
                   batch_size: int | None = None) -> dict[str, Any]:
    """Predict the competition's test.csv with the bundle's runs and write submission.csv.

    Also writes kit_run_report.json beside the submission: folds used and skipped, seconds per fold, and
    where kaggle_kit was imported from (kit simulate checks it came from the installed wheel).
    """
    import kaggle_kit
    from kaggle_kit.data.load import load_test, read_csv
    from kaggle_kit.errors import KitError
    from kaggle_kit.fileio import atomic_path, read_json, write_json
    from kaggle_kit.predict.inference import PredictionReport, predict_runs, submission_frame
    from kaggle_kit.registry import get_competition

    dataset_dir, competition_dir, output_path = Path(dataset_dir), Path(competition_dir), Path(output_path)
    started_at = clock() if started_at is None else started_at
    manifest = read_json(dataset_dir / MANIFEST_NAME)
    comp = get_competition(manifest["competition"])
    test_df = load_test(comp, competition_dir / "test.csv")
    sample = read_csv(competition_dir / "sample_submission.csv")
    runs = manifest["runs"]
    guard = DeadlineGuard(budget_hours * 3600, started_at, clock)
    report = PredictionReport()
    predict_start = clock()
    preds = predict_runs(comp, test_df, [dataset_dir / r["path"] for r in runs], [r["weight"] for r in runs],
                         device=device, batch_size=batch_size, data_dir=competition_dir, should_continue=guard,
                         clock=clock, report=report, folds=[r["folds"] for r in runs])
    sub = submission_frame(comp, test_df, preds, sample)
    problems = submission_problems(sub, sample, comp.schema.id_column)
    if problems:
        raise KitError(f"{output_path}: not a valid submission: {problems[0]}")
    with atomic_path(output_path) as tmp:
        sub.to_csv(tmp, index=False)
    summary = {
        "rows": len(sub),
        "folds_used": [f"{run}/fold{fold}" for run, fold in report.folds_used],
        "folds_skipped": [f"{run}/fold{fold}" for run, fold in report.folds_skipped],
        "fold_seconds": report.seconds,
        "fold_load_seconds": report.load_seconds,
        "predict_seconds": clock() - predict_start,
        "elapsed_seconds": clock() - started_at,
        "deadline_stopped": guard.stopped,
        "kaggle_kit_version": kaggle_kit.__version__,
        "kaggle_kit_file": kaggle_kit.__file__,
        "python": platform.python_version(),
    }
    write_json(output_path.parent / REPORT_NAME, summary)
    skipped = f", skipped {len(report.folds_skipped)} fold(s) for time" if report.folds_skipped else ""
    print(f"wrote {output_path}: {len(sub)} rows from {len(report.folds_used)} fold(s){skipped}")
    return summary
