"""The run folder: every artifact of a training run, traceable to its config, data, code and seed."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import kaggle_kit
from kaggle_kit.config import TrainConfig, from_dict
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json, sha256_file
from kaggle_kit.runs.status import current_session, describe_session, effective_status, now_iso

TRACKED_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "scikit-learn")


@dataclass(frozen=True)
class RunDir:
    """Names of the files in a run folder, in one place."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "run_config.json"

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.json"

    @property
    def tokenizer(self) -> Path:
        return self.path / "tokenizer"

    @property
    def backbone(self) -> Path:
        return self.path / "backbone"

    @property
    def folds_csv(self) -> Path:
        return self.path / "folds.csv"

    @property
    def oof(self) -> Path:
        return self.path / "oof.csv"

    @property
    def cv(self) -> Path:
        return self.path / "cv.json"

    @property
    def postprocess(self) -> Path:
        """The plugin's post-processor state fitted on this run's OOF predictions (when it has one)."""
        return self.path / "postprocess.json"

    @property
    def fallback(self) -> Path:
        """The prediction for hidden-test rows that cannot be predicted (kaggle_kit/predict/fallback.py)."""
        return self.path / "fallback.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def data(self) -> Path:
        """The plugin's extra files (USPPPM's CPC titles) as found when the run started."""
        return self.path / "data"

    def extra_file(self, name: str) -> Path:
        return self.data / name

    def weights(self, fold: int) -> Path:
        return self.path / f"fold{fold}.safetensors"

    def fold_result(self, fold: int) -> Path:
        return self.path / "folds" / f"fold{fold}.json"

    def fold_oof(self, fold: int) -> Path:
        return self.path / "folds" / f"fold{fold}_oof.csv"

    def fold_log(self, fold: int) -> Path:
        return self.path / "folds" / f"fold{fold}_metrics.csv"

    def lock(self):
        """The run-wide lock: held for the shared files (manifest.json, train.log, the final reports) while several
        processes (fold workers) write into one run folder."""
        return _file_lock(self.path / ".locks" / "run.lock")

    def fold_lock(self, fold: int):
        """Held while a process trains `fold`: a second process skips the fold instead of writing over it. The
        operating system drops it when its process dies, so a killed worker's fold can be resumed."""
        return _file_lock(self.path / ".locks" / f"fold{fold}.lock")

    def fold_done(self, fold: int) -> bool:
        """Weights and result saved, and the OOF predictions - except for the full-train model, which has none."""
        if not (self.fold_result(fold).is_file() and self.weights(fold).is_file()):
            return False
        return self.fold_oof(fold).is_file() or self.is_full_train_fold(fold)

    def is_full_train_fold(self, fold: int) -> bool:
        try:
            return bool(read_json(self.fold_result(fold)).get("full_train"))
        except (OSError, ValueError):
            return False

    def cv_folds(self) -> list[int]:
        """The finished folds that were validated (every finished fold but the full-train model)."""
        return [f for f in self.finished_folds() if not self.is_full_train_fold(f)]

    def finished_folds(self) -> list[int]:
        """The folds the run's records list as finished: a result file (folds/foldN.json, written last, with the
        OOF predictions beside it unless it is the full-train model). Taken from the records, never from the weight
        files present: a lost weight file must be refused by `check_fold_weights`, not silently leave its fold
        out."""
        folds = [int(p.stem[4:]) for p in self.path.glob("folds/fold*.json") if p.stem[4:].isdigit()]
        return sorted(f for f in folds if self.fold_oof(f).is_file() or self.is_full_train_fold(f))

    def recorded_weights(self, fold: int) -> dict[str, Any] | None:
        """The fold's weight file as recorded when it was saved ({"sha256", "size"} in folds/foldN.json); None for
        runs made before kaggle-kit recorded it."""
        try:
            record = read_json(self.fold_result(fold)).get("weights")
        except (OSError, ValueError, AttributeError):
            return None
        return record if isinstance(record, dict) and record.get("sha256") else None

    def select_folds(self, folds: Sequence[int] | None = None) -> list[int]:
        """`folds` (default: every finished fold), each a finished fold of this run, with its weight file checked
        (`check_fold_weights`); one line naming the fold when one is not."""
        finished = self.finished_folds()
        if folds is None:
            return self.check_fold_weights(finished)
        unknown = sorted(set(folds) - set(finished))
        if unknown:
            listed = ",".join(map(str, finished)) or "none"
            raise KitError(f"--folds {','.join(map(str, folds))}: fold {unknown[0]} is not a finished fold of "
                           f"{self.path} (finished: {listed})")
        return self.check_fold_weights(list(folds))

    def damaged_folds(self) -> list[int]:
        """The finished folds whose weight file is missing or not the recorded size (no sha256: cheap, for
        listings; `check_fold_weights` is the full check that predict and bundle make)."""
        return [fold for fold in self.finished_folds()
                if weight_file_problem(self.weights(fold), self.recorded_weights(fold), "training", hash=False)]

    def check_fold_weights(self, folds: Sequence[int]) -> list[int]:
        """Each fold's weight file present, with the size and sha256 recorded when it was saved; `folds` back.

        Runs made before kaggle-kit recorded the sha256 are checked for presence only. A missing or changed file is
        one error naming the fold and the folds that are intact, so predicting without it is a choice (--folds),
        never a silent subset."""
        problems = {fold: weight_file_problem(self.weights(fold), self.recorded_weights(fold), "training")
                    for fold in folds}
        damaged = [fold for fold, problem in problems.items() if problem]
        if damaged:
            fold = damaged[0]
            intact = [f for f in folds if f not in damaged]
            hint = (f"restore it, or predict without it: --folds {','.join(map(str, intact))}" if intact
                    else "restore it, or retrain the run")
            raise KitError(f"{self.weights(fold)}: fold {fold} is listed as finished but {problems[fold]} ({hint})")
        return list(folds)

    def load_config(self) -> TrainConfig:
        if not self.config.is_file():
            raise KitError(f"{self.path}: not a kaggle-kit run folder (no {self.config.name})")
        try:
            values = read_json(self.config)
        except ValueError as err:
            raise KitError(f"{self.config}: not valid JSON ({err}); the run folder is damaged") from None
        return from_dict(values, str(self.config))

    def load_manifest(self) -> dict[str, Any]:
        return read_json(self.manifest) if self.manifest.is_file() else {}

    def is_complete(self) -> bool:
        return self.load_manifest().get("status") == "complete"

    def data_source(self) -> dict[str, str]:
        """How the run found its data (manifest `data_source`: kind option/default/sample and the folder)."""
        return self.load_manifest().get("data_source") or {}

    def data_dir(self) -> Path | None:
        """The folder this run trained on, as run_config.json's `data` records it - except that a run on the
        embedded sample finds the sample of this installation, wherever the package now lives."""
        cfg = self.load_config()
        source = self.data_source()
        if source.get("kind") == "sample" or cfg.data == "sample":
            from kaggle_kit.data.sample import sample_dir

            return sample_dir(cfg.competition)
        if cfg.data:
            return Path(cfg.data)
        return Path(source["dir"]) if source.get("dir") else None

    def status(self) -> str:
        """running, complete, partial, interrupted, failed, or dead (a `running` manifest whose process is gone)."""
        return effective_status(self.load_manifest())


def weights_record(path: Path) -> dict[str, Any]:
    """What a fold's result records of its weight file at save, for `weight_file_problem` to compare against."""
    return {"sha256": _sha256(path), "size": path.stat().st_size}


def weight_file_problem(path: Path, recorded: dict[str, Any] | None, since: str, hash: bool = True) -> str | None:
    """Why a weight file is not the one recorded (missing, or its size or sha256 changed since `since`); None when
    it is (or, with nothing recorded, when it is present). `hash=False` checks presence and size only, cheap
    enough for a listing of many runs."""
    if not path.is_file():
        return "its weight file is missing"
    if not recorded:
        return None
    if recorded.get("size") is not None and path.stat().st_size != recorded["size"]:
        return (f"its weight file changed since {since} ({path.stat().st_size} bytes, {recorded['size']} recorded "
                f"at save)")
    if hash and _sha256(path) != recorded["sha256"]:
        return f"its weight file changed since {since} (sha256 differs from the one recorded at save)"
    return None


_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a weight file, read once per process while the file stays the same (size and mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


_LOCKS: dict[Path, Any] = {}


def _file_lock(path: Path):
    """One FileLock object per lock file and process: two objects for one file would block each other."""
    from filelock import FileLock

    path = path.resolve()
    if path not in _LOCKS:
        path.parent.mkdir(parents=True, exist_ok=True)
        _LOCKS[path] = FileLock(str(path))
    return _LOCKS[path]


def package_versions() -> dict[str, str]:
    versions = {"kaggle-kit": kaggle_kit.__version__, "python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str | None:
    """The commit of the kaggle-kit checkout this code runs from, plus '-dirty' for local changes."""
    source = Path(kaggle_kit.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def new_manifest(cfg: TrainConfig, data_files: dict[str, Path], device: str, model_path: Path,
                 data_source: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "status": "running",
        "competition": cfg.competition,
        "seed": cfg.seed,
        "model_path": str(model_path),
        "data": {name: {"sha256": sha256_file(p), "size": p.stat().st_size, "source": str(p.resolve())}
                 for name, p in data_files.items()},
        "data_source": data_source,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": device,
        "command": " ".join(sys.argv),
        "started": now_iso(),
        "finished": None,
    }


def default_run_path(root: Path, competition: str, model_path: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / competition / f"{stamp}-{model_path.name if model_path.name != 'model' else model_path.parent.name}"


def latest_incomplete_run(root: Path, competition: str) -> Path | None:
    """The newest run that is neither complete nor still running in another process."""
    candidates = sorted((root / competition).glob("*/run_config.json"), key=lambda p: p.stat().st_mtime)
    for config in reversed(candidates):
        if RunDir(config.parent).status() not in ("complete", "running"):
            return config.parent
    return None


def check_not_running(run: RunDir) -> None:
    """Two processes training into one folder would overwrite each other's folds."""
    manifest = run.load_manifest()
    if effective_status(manifest) == "running":
        raise KitError(f"--resume: {run.path} is still running ({describe_session(current_session(manifest))}); "
                       f"stop that process first, or wait until it counts as dead")
