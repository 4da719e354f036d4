"""What a training run reports while it runs: its status and heartbeat in the manifest, its metrics to a tracker.

The pipeline opens one session per process; the trainer hands over every metrics row. However the session
ends, the manifest says so: complete/partial (written by finalize), interrupted (Ctrl-C or SIGTERM) or failed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
from collections.abc import Iterator
from typing import Any

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.runs.status import Heartbeat
from kaggle_kit.runs.tracker import Tracker, open_tracker, run_artifacts, tracker_kind

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("train_loss", "lr", "grad_norm", "val_score")


class NullMonitor:
    """What a trainer reports to when nobody listens (a trainer used on its own, a rank other than 0, a fold
    worker whose parent holds the run's session): every report is a no-op, so callers need not ask which."""

    def log(self, row: dict[str, Any]) -> None:
        pass

    def beat(self) -> None:
        pass

    def fold_done(self, fold: int, result: dict[str, Any]) -> None:
        pass

    def finished(self, cv: dict[str, Any]) -> None:
        pass

    @contextlib.contextmanager
    def session(self, cfg: Any) -> Iterator[NullMonitor]:
        yield self


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` and schedulers' SIGTERM end the run like Ctrl-C: marked interrupted, resumable."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def close_progress_bars() -> None:
    """Bars left open by an exception would redraw at exit, after the CLI's last line; close them now."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


class RunMonitor(NullMonitor):
    """Heartbeat and tracker of one training process. A tracker that fails mid-run is switched off with one
    warning: the run folder is the record, the tracker a copy, and losing the copy must not cost the run."""

    def __init__(self, run: RunDir, heartbeat: Heartbeat | None = None):
        self.run = run
        self.heartbeat = heartbeat or Heartbeat(run.manifest)
        self.tracker = Tracker()

    def _track(self, method: str, *args: Any) -> None:
        try:
            getattr(self.tracker, method)(*args)
        except Exception as err:  # the tracker's own errors: network, store, disk
            log.warning("%s tracker failed (%s: %s); the run goes on without it", self.tracker.kind,
                        type(err).__name__, err)
            self.tracker = Tracker()

    def log(self, row: dict[str, Any]) -> None:
        """One metrics.csv row from the trainer's step loop."""
        values = {k: float(row[k]) for k in METRIC_COLUMNS if k in row and math.isfinite(float(row[k]))}
        if values:
            self._track("log_metrics", int(row["fold"]), int(row["step"]), values)
        self.heartbeat.beat()

    def beat(self) -> None:
        self.heartbeat.beat()

    def fold_done(self, fold: int, result: dict[str, Any]) -> None:
        self._track("log_fold", fold, result)
        self.heartbeat.beat(force=True)

    def finished(self, cv: dict[str, Any]) -> None:
        self._track("log_cv", cv)

    def _open_tracker(self, cfg: Any) -> None:
        manifest = read_json(self.run.manifest)
        try:
            self.tracker = open_tracker(cfg, self.run.path, manifest.get("tracker"))
        except KitError:
            raise
        except Exception as err:
            raise KitError(f"--tracker {tracker_kind(cfg)}: could not start ({type(err).__name__}: {err})") from err
        if self.tracker.kind:
            self.heartbeat.record(tracker={"kind": self.tracker.kind, "run_id": self.tracker.run_id})
            self._track("log_params", read_json(self.run.config))

    def _close(self, outcome: str, error: str | None = None) -> None:
        self.heartbeat.end(outcome, error)
        self._track("finish", outcome)


    @contextlib.contextmanager
    def session(self, cfg: Any) -> Iterator[RunMonitor]:
        self.heartbeat.start()
        with sigterm_as_interrupt():
            try:
                self._open_tracker(cfg)
                yield self
            except KeyboardInterrupt:
                close_progress_bars()
                self._close("interrupted")
                raise
            except BaseException as err:
                close_progress_bars()
                self._close("failed", f"{type(err).__name__}: {err}")
                raise
        if self.tracker.kind:
            self._track("log_artifacts", self.run.path, run_artifacts(self.run.path))
        self._close(read_json(self.run.manifest).get("status") or "complete")
