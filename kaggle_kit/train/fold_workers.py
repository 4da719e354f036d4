"""Fold-parallel training: `kit train COMP --fold-workers N` trains N folds at once, one process per fold.

The starting process validates everything and writes the run folder's setup; each fold then runs as
`python -m kaggle_kit.train.fold_workers RUN FOLD DEVICE THREADS`, which is a `--resume` of that run limited to one
fold, so a fold trained in a worker is the same fold a sequential run trains (folds are seeded by their number,
not by what ran before). Each worker holds its fold's lock while it trains and appends to train.log under the run's
lock; the starting process pools the folds (`finalize`) once, after the last one is in. A killed worker leaves its
fold unfinished and the other folds untouched: `kit train COMP --resume --out RUN` trains what is missing.

One process per fold (rather than one per worker running several folds) keeps the scheduling dynamic - a free
device takes the next fold - and a crash costs one fold. Starting a process costs a few seconds; a fold, minutes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from kaggle_kit.config import TrainConfig
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.runs.monitor import NullMonitor
from kaggle_kit.terminal import NOISY_LOGGERS, quiet_transformers, run_command
from kaggle_kit.train.session_limit import SessionLimit

log = logging.getLogger(__name__)
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 30


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: its device as the worker names it, the environment that pins it there."""

    name: str
    device: str
    threads: int
    env: dict[str, str]


def worker_slots(cfg: TrainConfig, device: torch.device, n_folds: int) -> list[Slot]:
    """One slot per concurrent worker. GPUs: one visible GPU per worker (CUDA_VISIBLE_DEVICES), round robin over
    --devices. CPU: the run's threads split evenly, so N workers never ask for more cores than one run would
    (intra-op threads of several processes on the same cores slow every one of them down)."""
    workers = min(cfg.fold_workers, n_folds)
    total_threads = cfg.threads or torch.get_num_threads()
    threads = max(1, total_threads // max(workers, 1))
    if device.type == "cpu" and workers > total_threads:
        log.warning("%d fold workers on %d thread(s): each gets 1 thread and they share cores", workers,
                    total_threads)
    common = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "RAYON_NUM_THREADS": str(threads),
              "TQDM_DISABLE": "1"}
    if device.type != "cuda":
        return [Slot(f"cpu worker {k}", "cpu", threads, common) for k in range(workers)]
    gpus = cfg.devices if cfg.devices is not None else list(range(torch.cuda.device_count()))
    if workers > len(gpus):
        log.warning("%d fold workers on %d GPU(s): some GPUs train two folds at once", workers, len(gpus))
    return [Slot(f"GPU {gpus[k % len(gpus)]}", "cuda", threads,
                 {**common, "CUDA_VISIBLE_DEVICES": str(gpus[k % len(gpus)])}) for k in range(workers)]


def worker_command(run: RunDir, fold: int, slot: Slot) -> list[str]:
    return [sys.executable, "-m", "kaggle_kit.train.fold_workers", str(run.path), str(fold), slot.device,
            str(slot.threads)]


def train_in_workers(cfg: TrainConfig, run: RunDir, folds: list[int], device: torch.device,
                     monitor: NullMonitor | None = None, limit: SessionLimit | None = None) -> str | None:
    """Train `folds` in worker processes, a free slot taking the next fold; return when all have ended. The
    `monitor` (the run's session, held by this process) beats while the workers train and hears of each fold.

    A worker that fails does not stop the others; the failed folds are named afterwards in one error. With a
    session `limit` (--stop-after-hours), a fold is not started when it would end past it; returns why, or None.
    """
    if not folds:
        return None
    limit = limit or SessionLimit(None)
    stopped, started_at = None, {}
    monitor = monitor or NullMonitor()
    slots = worker_slots(cfg, device, len(folds))
    pending = list(folds)
    running: dict[int, tuple[subprocess.Popen, int, float]] = {}
    failed: dict[int, str] = {}
    try:
        while pending or running:
            for k, slot in enumerate(slots):
                if k in running or not pending:
                    continue
                stopped = limit.stop_reason()
                if stopped:
                    log.warning("fold(s) %s: not started, %s; the run is left resumable",
                                ", ".join(map(str, pending)), stopped)
                    pending.clear()
                    continue
                fold = pending.pop(0)
                started_at[fold] = limit.elapsed()
                process = subprocess.Popen(worker_command(run, fold, slot), env={**os.environ, **slot.env})
                log.info("fold %d: worker pid %d on %s (%d thread%s)", fold, process.pid, slot.name, slot.threads,
                         "s" if slot.threads > 1 else "")
                running[k] = (process, fold, time.monotonic())
            time.sleep(POLL_SECONDS)
            monitor.beat()
            for k, (process, fold, started) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[k]
                if code == 0 and run.fold_done(fold):
                    limit.fold_done(limit.elapsed() - started_at[fold])
                    log.info("fold %d: worker finished in %.0fs", fold, time.monotonic() - started)
                    result = read_json(run.fold_result(fold))
                    if not result.get("full_train"):
                        monitor.fold_done(fold, result)
                    continue
                failed[fold] = _describe_exit(code)
                log.error("fold %d: worker %s; the other folds go on", fold, failed[fold])
    except KeyboardInterrupt:
        _stop([process for process, _, _ in running.values()])
        raise
    if failed:
        details = "; ".join(f"fold {fold}: {why}" for fold, why in sorted(failed.items()))
        raise KitError(f"fold(s) {', '.join(map(str, sorted(failed)))} did not finish ({details}); the finished "
                       f"folds are kept in {run.path}: train the rest with `kit train {cfg.competition} --resume "
                       f"--out {run.path}`")
    return stopped


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed ({signal.Signals(-code).name})"
    if code == 0:
        return "ended without finishing the fold (another process held its lock)"
    return f"exited with code {code} (its error is above)"


def _stop(processes: list[subprocess.Popen]) -> None:
    """Ctrl-C: ask every worker to stop (they save nothing half-done), then make sure they have."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> None:
    """A fold worker: RUN FOLD DEVICE THREADS. Trains that one fold of the run, never pools the run."""
    from kaggle_kit.train.pipeline import train

    run_path, fold, device, threads = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [fold {fold}] %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, force=True)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_transformers()

    def work() -> None:
        run = RunDir(Path(run_path))
        cfg = run.load_config().model_copy(update={"train_folds": [int(fold)], "device": device,
                                                   "threads": int(threads), "fold_workers": 1})
        train(cfg, run.path, resume=True, finalize_run=False)

    run_command(work)


if __name__ == "__main__":
    main()
