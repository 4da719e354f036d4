"""Optional experiment trackers (`tracker: mlflow | wandb | tensorboard`): the run folder stays the truth.

A tracker receives the config, every metrics.csv row as it is written, each fold's result, the pooled CV and
the run folder's small files; it never decides anything. Each works offline by default, its files inside the
run folder: MLflow a file store in RUN/mlruns (or MLFLOW_TRACKING_URI), W&B offline mode in RUN/wandb (or
WANDB_MODE=online), TensorBoard event files in RUN/tensorboard. Each is an optional extra, imported only when
chosen; a missing one is a one-line error before the run starts.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, get_args

from kaggle_kit.config import Tracker
from kaggle_kit.errors import KitError

log = logging.getLogger(__name__)

# tracker -> (module that must be importable, pip extra that installs it)
TRACKERS: dict[str, tuple[str, str]] = {
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
    "tensorboard": ("tensorboard", "tensorboard"),
}
# Weights and model files are large and already in the run folder; tracker folders would log themselves.
NOT_ARTIFACTS = ("tokenizer", "backbone", "mlruns", "wandb", "tensorboard")


if set(TRACKERS) != set(get_args(Tracker)):  # the --tracker choices are declared once, in config.Tracker
    raise RuntimeError(f"tracker registry {sorted(TRACKERS)} differs from config.Tracker "
                       f"{sorted(get_args(Tracker))}")


def tracker_kind(cfg: Any) -> str | None:
    return cfg.tracker


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_tracker(cfg: Any) -> None:
    """Called before anything is written: an uninstalled tracker is one line, not a failed run (an unknown one is
    refused by the setting's declaration)."""
    kind = tracker_kind(cfg)
    if kind is None:
        return
    module, extra = TRACKERS[kind]
    if not installed(module):
        raise KitError(f"--tracker {kind}: {module} is not installed: pip install 'kaggle-kit[{extra}]'")


def run_artifacts(folder: Path) -> list[Path]:
    """The run folder's descriptive files: config, manifest, CV, OOF, metrics, plots, log (no weights)."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (not path.is_file() or rel.parts[0] in NOT_ARTIFACTS or path.suffix in (".safetensors", ".tmp")
                or any(part.startswith(".") for part in rel.parts)):
            continue
        files.append(path)
    return files


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = "none" if value is None else str(value)
    return flat


def fold_metrics(fold: int, result: dict[str, Any]) -> dict[str, float]:
    values = {f"cv/fold{fold}": result["score"], f"cv/fold{fold}_best_step": result.get("best_step", 0),
              f"cv/fold{fold}_seconds": result.get("seconds", 0.0)}
    values.update({f"cv/fold{fold}_{t}": v for t, v in result.get("per_target", {}).items()})
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def cv_metrics(cv: dict[str, Any]) -> dict[str, float]:
    values = {"cv/score": cv["score"], "cv/baseline": cv["baseline_train_mean"]["score"]}
    values.update({f"cv/{t}": v for t, v in cv["per_target"].items()})
    return {k: float(v) for k, v in values.items()}


class Tracker:
    """The no-op tracker, and the interface of the real ones."""

    kind: str | None = None
    # An id that lets `--resume` continue the same tracker run (recorded in the manifest).
    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, fold: int, step: int, values: dict[str, float]) -> None:
        pass

    def log_fold(self, fold: int, result: dict[str, Any]) -> None:
        pass

    def log_cv(self, cv: dict[str, Any]) -> None:
        pass

    def log_artifacts(self, folder: Path, files: list[Path]) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


class MLflowTracker(Tracker):
    """One MLflow run per kit run, through MlflowClient (no global active run to leak between runs).

    Step metrics are buffered and sent every FLUSH_SECONDS, at each fold end and at the finish, so a remote
    tracking server does not cost a request per optimizer step.
    """

    kind = "mlflow"
    FLUSH_SECONDS = 10.0

    def __init__(self, run_path: Path, competition: str, resume_id: str | None):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_path / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps the file store in maintenance mode behind this switch; it needs no database.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"kaggle-kit-{competition}"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = None
        if resume_id:
            try:
                self.client.get_run(resume_id)
                self.client.update_run(resume_id, status="RUNNING")
                self.run_id = resume_id
            except Exception:  # a store that lost the run gets a new one
                log.warning("mlflow: run %s not found in %s, starting a new one", resume_id, uri)
        if self.run_id is None:
            self.run_id = self.client.create_run(experiment_id, run_name=run_path.name, tags={
                "kit.run_folder": str(run_path.resolve()), "kit.competition": competition}).info.run_id
        self.pending: list = []
        self.last_flush = time.monotonic()
        log.info("mlflow: run %s in %s", self.run_id, uri)

    def _metrics(self, values: dict[str, float], step: int) -> list:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        return [Metric(key, value, stamp, step) for key, value in values.items()]

    def _flush(self) -> None:
        for start in range(0, len(self.pending), 1000):
            self.client.log_batch(self.run_id, metrics=self.pending[start:start + 1000])
        self.pending = []
        self.last_flush = time.monotonic()

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in flatten_params(params).items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, fold: int, step: int, values: dict[str, float]) -> None:
        self.pending += self._metrics({f"fold{fold}/{k}": v for k, v in values.items()}, step)
        if time.monotonic() - self.last_flush >= self.FLUSH_SECONDS:
            self._flush()

    def log_fold(self, fold: int, result: dict[str, Any]) -> None:
        self.pending += self._metrics(fold_metrics(fold, result), 0)
        self._flush()

    def log_cv(self, cv: dict[str, Any]) -> None:
        self.pending += self._metrics(cv_metrics(cv), 0)
        self._flush()

    def log_artifacts(self, folder: Path, files: list[Path]) -> None:
        for path in files:
            parent = path.parent.relative_to(folder)
            self.client.log_artifact(self.run_id, str(path), None if parent == Path(".") else parent.as_posix())

    def finish(self, status: str) -> None:
        self._flush()
        self.client.set_tag(self.run_id, "kit.status", status)
        states = {"complete": "FINISHED", "partial": "FINISHED", "interrupted": "KILLED"}
        self.client.set_terminated(self.run_id, status=states.get(status, "FAILED"))


class WandbTracker(Tracker):
    """A W&B run, offline unless WANDB_MODE says otherwise (`wandb sync RUN/wandb/offline-run-*` uploads it).

    Steps restart in every fold, so each fold's metrics get their own step axis (`fold0/step`).
    """

    kind = "wandb"

    def __init__(self, run_path: Path, competition: str, resume_id: str | None):
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or f"kaggle-kit-{competition}",
                              name=run_path.name, dir=str(run_path), mode=os.environ.get("WANDB_MODE") or "offline",
                              id=resume_id, resume="allow" if resume_id else None)
        self.run_id = self.run.id
        self.folds: set[int] = set()
        log.info("wandb: run %s (%s) in %s", self.run.id, self.run.settings.mode, run_path / "wandb")

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, fold: int, step: int, values: dict[str, float]) -> None:
        if fold not in self.folds:
            self.run.define_metric(f"fold{fold}/step")
            self.run.define_metric(f"fold{fold}/*", step_metric=f"fold{fold}/step")
            self.folds.add(fold)
        self.run.log({**{f"fold{fold}/{k}": v for k, v in values.items()}, f"fold{fold}/step": step})

    def log_fold(self, fold: int, result: dict[str, Any]) -> None:
        self.run.summary.update(fold_metrics(fold, result))

    def log_cv(self, cv: dict[str, Any]) -> None:
        self.run.summary.update(cv_metrics(cv))

    def log_artifacts(self, folder: Path, files: list[Path]) -> None:
        for path in files:
            self.run.save(str(path), base_path=str(folder), policy="now")

    def finish(self, status: str) -> None:
        self.run.summary["kit/status"] = status
        self.run.finish(exit_code=0 if status in ("complete", "partial") else 1)


class TensorBoardTracker(Tracker):
    """Event files in RUN/tensorboard: scalars per fold, the config and CV as text, the plots as images."""

    kind = "tensorboard"

    def __init__(self, run_path: Path, competition: str, resume_id: str | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_path / "tensorboard"))
        log.info("tensorboard: %s", run_path / "tensorboard")

    def log_params(self, params: dict[str, Any]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in flatten_params(params).items())
        self.writer.add_text("config", f"| setting | value |\n| --- | --- |\n{rows}")

    def log_metrics(self, fold: int, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"fold{fold}/{key}", value, step)

    def log_fold(self, fold: int, result: dict[str, Any]) -> None:
        for key, value in fold_metrics(fold, result).items():
            self.writer.add_scalar(key, value, 0)
        self.writer.flush()

    def log_cv(self, cv: dict[str, Any]) -> None:
        for key, value in cv_metrics(cv).items():
            self.writer.add_scalar(key, value, 0)

    def log_artifacts(self, folder: Path, files: list[Path]) -> None:
        import numpy as np
        from PIL import Image

        for path in files:
            rel = path.relative_to(folder).as_posix()
            if path.suffix == ".png":
                with Image.open(path) as image:
                    self.writer.add_image(rel, np.asarray(image.convert("RGB")), 0, dataformats="HWC")
            elif path.suffix == ".json" and path.stat().st_size < 100_000:
                self.writer.add_text(rel, "```\n" + path.read_text(encoding="utf-8") + "\n```")

    def finish(self, status: str) -> None:
        self.writer.add_text("status", status)
        self.writer.close()


def open_tracker(cfg: Any, run_path: Path, previous: dict[str, Any] | None = None) -> Tracker:
    """The tracker the config names (the no-op one without), continuing the recorded tracker run on resume."""
    kind = tracker_kind(cfg)
    if kind is None:
        return Tracker()
    check_tracker(cfg)
    classes = {"mlflow": MLflowTracker, "wandb": WandbTracker, "tensorboard": TensorBoardTracker}
    resume_id = (previous or {}).get("run_id") if (previous or {}).get("kind") == kind else None
    return classes[kind](run_path, cfg.competition, resume_id)
