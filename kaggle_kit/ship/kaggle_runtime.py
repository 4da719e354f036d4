"""What the generated Kaggle notebook runs: find its inputs, check the bundle, predict within the time limit,
write the submission.

The notebook imports this module from the installed kaggle-kit wheel, so Kaggle runs the same inference code as
`kit predict`. `find_inputs`, `verify_files` and `report_versions` are the exceptions: they run before the wheel
is installed (the wheel is one of the files they find and check), so they use only the standard library, import
inside their bodies, and the notebook carries a copy of their source.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from kaggle_kit.ship.projection import notebook_seconds

MANIFEST_NAME = "manifest.json"
REPORT_NAME = "kit_run_report.json"
KAGGLE_LIMIT_HOURS = 9.0
RUNTIME_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "scikit-learn")
DEFAULT_BUDGET_HOURS = 8.5


def find_inputs(input_root, bundle_id, competition_slug, test_columns, submission_columns, dataset_dir=None,
                competition_dir=None):
    """The bundle's folder (the manifest.json whose bundle_id matches) and the competition's folder (test.csv and a
    sample_submission.csv with this competition's columns), found anywhere under `input_root`.

    Kaggle mounts inputs as /kaggle/input/competitions/<slug>/ and /kaggle/input/datasets/<owner>/<slug>/ (older
    sessions: /kaggle/input/<slug>/); datasets also get renamed and forked, so folder names are only a tie-breaker.
    """
    import csv
    import json
    import os

    def header(path):
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                return next(csv.reader(handle), [])
        except (OSError, UnicodeDecodeError, csv.Error):
            return []

    seen, bundles, competitions, visited = [], [], [], set()
    if dataset_dir is None or competition_dir is None:
        if not os.path.isdir(input_root):
            raise RuntimeError(f"input discovery: {input_root} does not exist; attach the bundle's dataset and the "
                               f"competition to this notebook, or set DATASET_DIR and COMPETITION_DIR")
        for root, dirs, files in os.walk(input_root, followlinks=True):
            dirs.sort()
            real = os.path.realpath(root)
            depth = os.path.relpath(root, input_root).count(os.sep) + (root != input_root)
            if real in visited or depth > 6:
                dirs[:] = []
                continue
            visited.add(real)
            if "manifest.json" in files:
                try:
                    with open(os.path.join(root, "manifest.json"), encoding="utf-8") as handle:
                        found_id = json.load(handle).get("bundle_id")
                except (OSError, ValueError, AttributeError):
                    found_id = "unreadable"
                seen.append(f"{root}/manifest.json (bundle_id {found_id})")
                if found_id == bundle_id:
                    bundles.append(root)
                dirs[:] = []  # a bundle holds no competition files; skip its models
                continue
            if "test.csv" in files or "sample_submission.csv" in files:
                test_header = header(os.path.join(root, "test.csv")) if "test.csv" in files else None
                sample_header = (header(os.path.join(root, "sample_submission.csv"))
                                 if "sample_submission.csv" in files else None)
                seen.append(f"{root}: test.csv columns {test_header}, sample_submission.csv columns {sample_header}")
                if (test_header is not None and sample_header is not None and set(test_columns) <= set(test_header)
                        and sorted(sample_header) == sorted(submission_columns)):
                    competitions.append(root)
            elif depth <= 3:
                seen.append(f"{root}/")

    def by_name(paths, slug):
        named = [p for p in paths if slug in p.split(os.sep)]
        return (named or paths)[0]

    def failure(what):
        listing = "; ".join(seen[:40]) + ("; ..." if len(seen) > 40 else "")
        return RuntimeError(f"input discovery: {what}. Under {input_root} it saw: {listing or 'nothing'}")

    if dataset_dir is None:
        if not bundles:
            raise failure(f"no manifest.json with bundle_id {bundle_id!r} (attach this bundle's dataset; an "
                          f"older or other bundle does not count)")
        dataset_dir = bundles[0]  # several copies of one bundle id hold the same files
    elif not os.path.isfile(os.path.join(dataset_dir, "manifest.json")):
        raise RuntimeError(f"input discovery: DATASET_DIR {dataset_dir} has no manifest.json")
    if competition_dir is None:
        if not competitions:
            raise failure(f"no folder with test.csv (columns {list(test_columns)}) and sample_submission.csv "
                          f"(columns {list(submission_columns)}) for {competition_slug} (attach the competition)")
        competition_dir = by_name(competitions, competition_slug)
    elif not os.path.isfile(os.path.join(competition_dir, "test.csv")):
        raise RuntimeError(f"input discovery: COMPETITION_DIR {competition_dir} has no test.csv")
    print(f"inputs: bundle {bundle_id} at {dataset_dir}")
    print(f"inputs: competition files at {competition_dir}")
    return dataset_dir, competition_dir


def report_versions(manifest, output_dir):
    """Print the versions the bundle assumed next to the ones this image has, warn on a major-version difference,
    and save this image's `pip freeze` (for `kit image-list`) into `output_dir`."""
    import os
    import platform
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, version

    assumed = manifest.get("assumed_versions", {})
    print(f"python {platform.python_version()} (bundle assumed {manifest.get('image_packages', {}).get('python')})")
    print(f"{'package':<24} {'bundle assumed':<18} this image")
    warnings = []
    for name, expected in sorted(assumed.items()):
        try:
            actual = version(name)
        except PackageNotFoundError:
            actual = "missing"
        print(f"{name:<24} {expected:<18} {actual}")
        if actual.split(".")[0] != expected.split(".")[0]:
            warnings.append(f"{name} {actual} (bundle assumed {expected})")
    for warning in warnings:
        print(f"WARNING: major version differs: {warning}; if the next cells fail, rebuild the bundle with an "
              f"image list from this session (kit image-list kaggle_image_freeze.txt)")
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True)
    if freeze.returncode == 0 and os.path.isdir(output_dir):
        with open(os.path.join(output_dir, "kaggle_image_freeze.txt"), "w", encoding="utf-8") as handle:
            handle.write(f"# python: {platform.python_version()}\n" + freeze.stdout)
    return warnings


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

    The logged finish is the same method as kit bundle's and kit simulate's projections
    (kaggle_kit.ship.projection.notebook_seconds) with the numbers only the notebook has: the time elapsed on
    Kaggle and the folds' measured times on the hidden test.
    """

    budget_seconds: float
    started_at: float  # clock value at the notebook's start: installing and loading count against the limit
    clock: Callable[[], float] = time.time
    log: Callable[[str], None] = print
    stopped: bool = False

    def __call__(self, done: int, total: int, seconds: float, fold_seconds: float | None = None,
                 parallel: int = 1) -> bool:
        """`fold_seconds`: one fold's mean duration; `parallel`: folds that run at once (one per GPU). With parallel
        folds `seconds / done` is the throughput, not how long the next fold takes."""
        elapsed = self.clock() - self.started_at
        per_fold = fold_seconds if fold_seconds is not None else seconds / max(done, 1)
        remaining = total - done
        projected = notebook_seconds(elapsed, per_fold, remaining, parallel)
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


def installed_versions(names: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def run_submission(dataset_dir: str | Path, competition_dir: str | Path, output_path: str | Path,
                   budget_hours: float = DEFAULT_BUDGET_HOURS, started_at: float | None = None,
                   clock: Callable[[], float] = time.time, device: str = "auto",
                   batch_size: int | None = None, input_root: str | Path | None = None) -> dict[str, Any]:
    """Predict the competition's test.csv with the bundle's runs and write submission.csv; never stop without one.

    Rows with an empty text or an input the plugin cannot build get the runs' fallback prediction (counted in the
    log and the report). Any other failure here (the last-resort guard) writes the fallback for every row of
    sample_submission.csv, prints why, and returns: a notebook that stops scores nothing on the hidden rerun, a
    submission of priors at least scores. It raises only when even that submission cannot be written.
    Also writes kit_run_report.json beside the submission: folds used and skipped, seconds per fold, fallback rows,
    the failure if any, and where kaggle_kit was imported from (kit simulate checks it came from the installed
    wheel).
    """
    dataset_dir, competition_dir, output_path = Path(dataset_dir), Path(competition_dir), Path(output_path)
    started_at = clock() if started_at is None else started_at
    try:
        return _predict_submission(dataset_dir, competition_dir, output_path, budget_hours, started_at, clock, device,
                                   batch_size, input_root)
    except Exception as error:  # noqa: BLE001 - the last-resort guard: any failure still gets a submission
        return write_fallback_submission(dataset_dir, competition_dir, output_path, error, started_at, clock)


def _predict_submission(dataset_dir: Path, competition_dir: Path, output_path: Path, budget_hours: float,
                        started_at: float, clock: Callable[[], float], device: str, batch_size: int | None,
                        input_root: str | Path | None) -> dict[str, Any]:
    from kaggle_kit.data.load import load_test, read_csv
    from kaggle_kit.errors import KitError
    from kaggle_kit.fileio import atomic_path, read_json
    from kaggle_kit.predict.fallback import predict_with_fallback
    from kaggle_kit.predict.inference import PredictionReport
    from kaggle_kit.predict.quantize import manifest_mode
    from kaggle_kit.predict.submission import submission_frame
    from kaggle_kit.predict.test_time import from_record
    from kaggle_kit.registry import get_competition

    manifest = read_json(dataset_dir / MANIFEST_NAME)
    comp = get_competition(manifest["competition"])
    test_df = load_test(comp, competition_dir / "test.csv", lenient=True)
    sample = read_csv(competition_dir / "sample_submission.csv")
    runs = manifest["runs"]
    base = manifest.get("base_model")
    base_model = None
    if base is not None:  # LoRA runs: their base model, copied into the bundle or attached and found by identity
        from kaggle_kit.ship.base_model import find_base_model

        base_model = (dataset_dir / base["path"] if base.get("path")
                      else find_base_model(input_root or dataset_dir.parent, base["identity"]))
    guard = DeadlineGuard(budget_hours * 3600, started_at, clock)
    test_time = from_record(manifest.get("test_time"), f"{dataset_dir / MANIFEST_NAME}: test_time")
    report = PredictionReport()
    predict_start = clock()
    preds, fallback = predict_with_fallback(
        comp, test_df, [dataset_dir / r["path"] for r in runs], [r["weight"] for r in runs], data_dir=competition_dir,
        device=device, batch_size=batch_size, should_continue=guard, clock=clock, report=report,
        folds=[r["folds"] for r in runs], base_model=base_model,
        postprocess_state=(manifest.get("ensemble") or {}).get("postprocess"),
        merge_lora=bool((base or {}).get("merge")), quantize=manifest_mode(manifest), test_time=test_time,
        test_time_seconds=test_time.allowance_seconds(budget_hours) if test_time is not None else 0.0,
        deadline_left=lambda: budget_hours * 3600 - (clock() - started_at))
    if fallback.count:
        print(fallback.summary())
    sub = submission_frame(comp, test_df, preds, sample)
    problems = submission_problems(sub, sample, comp.schema.id_column)
    if problems:
        raise KitError(f"{output_path}: not a valid submission: {problems[0]}")
    summary = {
        "rows": len(sub),
        "folds_used": [f"{run}/fold{fold}" for run, fold in report.folds_used],
        "folds_skipped": [f"{run}/fold{fold}" for run, fold in report.folds_skipped],
        "fold_seconds": report.seconds,
        "fold_load_seconds": report.load_seconds,
        "predict_seconds": clock() - predict_start,
        "elapsed_seconds": clock() - started_at,
        "deadline_stopped": guard.stopped,
        "test_time": report.test_time or None,
        "fallback_rows": fallback.record(test_df[comp.schema.id_column].tolist()),
        "failure": None,
        **_environment(),
    }
    # the summary first: a failure after the submission is written would let the guard overwrite it with fallbacks
    with atomic_path(output_path) as tmp:
        sub.to_csv(tmp, index=False)
    _write_report(output_path, summary)
    skipped = f", skipped {len(report.folds_skipped)} fold(s) for time" if report.folds_skipped else ""
    print(f"wrote {output_path}: {len(sub)} rows from {len(report.folds_used)} fold(s){skipped}")
    return summary


def write_fallback_submission(dataset_dir: Path, competition_dir: Path, output_path: Path, error: BaseException,
                              started_at: float, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """The last resort: sample_submission.csv's rows, each with the runs' blended fallback prediction, and a report
    that says why. Re-raises `error` when even this cannot be written (then Kaggle has nothing to score anyway, and
    the error is what the log should show)."""
    import traceback

    reason = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "unknown"
    print(f"ERROR: prediction failed: {reason}\n  at {where}\nwriting the fallback prediction for every row, so "
          f"that the submission is still scored")
    try:
        from kaggle_kit.data.load import read_csv
        from kaggle_kit.fileio import atomic_path, read_json
        from kaggle_kit.predict.fallback import blended_fallback, fallback_submission
        from kaggle_kit.registry import get_competition

        manifest = read_json(dataset_dir / MANIFEST_NAME)
        comp = get_competition(manifest["competition"])
        sample = read_csv(competition_dir / "sample_submission.csv")
        runs = manifest["runs"]
        fallback = blended_fallback(comp, [dataset_dir / r["path"] for r in runs], [r["weight"] for r in runs])
        sub = fallback_submission(comp, sample, fallback)
        problems = submission_problems(sub, sample, comp.schema.id_column)
        if problems:
            raise RuntimeError(f"the fallback submission is not valid either: {problems[0]}")
        with atomic_path(output_path) as tmp:
            sub.to_csv(tmp, index=False)
    except Exception as second:
        print(f"ERROR: could not write even the fallback submission ({type(second).__name__}: {second}); "
              f"Kaggle has nothing to score")
        raise error from second
    summary = {
        "rows": len(sub), "folds_used": [], "folds_skipped": [], "fold_seconds": {}, "fold_load_seconds": {},
        "predict_seconds": 0.0, "elapsed_seconds": clock() - started_at, "deadline_stopped": False,
        "fallback_rows": {"count": len(sub), "of": len(sub), "kinds": {"prediction failed": len(sub)},
                          "summary": f"all {len(sub):,} rows got the fallback prediction (prediction failed: "
                                     f"{reason})", "rows": [], "value": fallback.tolist()},
        "failure": {"error": reason, "where": where,
                    "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))},
        **_environment(),
    }
    _write_report(output_path, summary)
    print(f"wrote {output_path}: {len(sub)} rows, every one the fallback prediction (see {REPORT_NAME})")
    return summary


def _environment() -> dict[str, Any]:
    import kaggle_kit

    return {"kaggle_kit_version": kaggle_kit.__version__, "kaggle_kit_file": kaggle_kit.__file__,
            "python": platform.python_version(), "versions": installed_versions(RUNTIME_PACKAGES)}


def _write_report(output_path: Path, summary: dict[str, Any]) -> None:
    from kaggle_kit.fileio import write_json

    write_json(output_path.parent / REPORT_NAME, summary)
