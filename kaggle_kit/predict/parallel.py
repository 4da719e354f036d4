"""Every device at inference: fold models spread over the visible GPUs (or over CPU processes), one process each.

A fold is predicted whole on one device, so the result does not depend on which device took it; the caller averages
folds in their order. Work is handed out one fold at a time: a device that finishes takes the next fold, and the
deadline check runs before each new fold, knowing how many run at once.

Processes rather than threads: each device gets its own Python interpreter, so a small model's kernel launches on
one GPU never wait for the other GPU's thread to release the GIL; the cost is starting a process per device once
(a few seconds, against minutes per fold on Kaggle's T4s).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from kaggle_kit.device import check_gpus_exist
from kaggle_kit.errors import KitError

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class Slot:
    """One device that predicts folds: the device, and the CPU threads of its process."""

    device: torch.device
    threads: int


def inference_slots(device: torch.device, devices: Sequence[int] | None = None,
                    workers: int | None = None) -> list[Slot]:
    """CUDA without an index: every visible GPU (or `devices`), one process each. CPU: `workers` processes (1 by
    default) splitting torch's threads. A single slot means: predict in this process, as before."""
    threads = torch.get_num_threads()
    if device.type == "cuda" and device.index is None:
        gpus = list(devices) if devices is not None else list(range(torch.cuda.device_count()))
        check_gpus_exist(gpus)
        gpus = gpus[:workers] if workers else gpus
        if len(gpus) > 1:
            return [Slot(torch.device("cuda", g), max(1, threads // len(gpus))) for g in gpus]
        return [Slot(torch.device("cuda", gpus[0]) if gpus else device, threads)]
    if devices is not None:
        raise KitError(f"--devices {','.join(map(str, devices))}: names GPUs, but prediction runs on {device}; "
                       f"on a CPU use --workers N")
    workers = workers or 1
    if device.type != "cpu" or workers == 1:
        return [Slot(device, threads)]
    return [Slot(device, max(1, threads // workers)) for _ in range(workers)]


def _worker(slot: Slot, inputs, quantize: str | None, inbox, outbox) -> None:
    """A device's process: predict the folds it is given until it is given None."""
    from kaggle_kit.predict.inference import predict_fold
    from kaggle_kit.terminal import quiet_transformers

    torch.set_num_threads(slot.threads)
    if slot.device.type == "cuda":
        torch.cuda.set_device(slot.device)
    quiet_transformers()
    from transformers import AutoModel  # noqa: F401  imported before the first fold, so its time is the fold's own
    while (job := inbox.get()) is not None:
        run_index, fold = job
        try:
            raw, load_seconds, seconds = predict_fold(inputs[run_index], fold, slot.device, quantize, desc=False)
        except KitError as err:
            outbox.put((job, None, str(err), 0.0))
            continue
        outbox.put((job, raw, load_seconds, seconds))


def predict_folds(slots: Sequence[Slot], inputs, jobs: Sequence[tuple[int, int]], quantize: str | None,
                  may_start: Callable[[int], bool],
                  finished: Callable[[tuple[int, int], np.ndarray, float, float], None]) -> None:
    """Predict `jobs` ((run index, fold) pairs) on `slots`, calling `finished` as folds come back. A fold starts
    only while `may_start(folds done)` says so; folds already running always finish."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    outbox = ctx.Queue()
    inboxes = [ctx.Queue() for _ in slots]
    processes = [ctx.Process(target=_worker, args=(slot, inputs, quantize, inbox, outbox), daemon=True)
                 for slot, inbox in zip(slots, inboxes, strict=True)]
    for process in processes:
        process.start()
    pending = list(jobs)
    busy: dict[int, tuple[int, int]] = {}
    done = 0
    stopped = False
    try:
        while True:
            for k in range(len(slots)):
                if k not in busy and pending and not stopped:
                    if not may_start(done):
                        stopped = True
                        break
                    busy[k] = pending.pop(0)
                    inboxes[k].put(busy[k])
            if not busy:
                return
            try:
                job, raw, load_seconds, seconds = outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                _check_alive(processes, busy, slots, inputs)
                continue
            k = next(k for k, running in busy.items() if running == job)
            del busy[k]
            if raw is None:
                raise KitError(load_seconds)
            done += 1
            finished(job, raw, load_seconds, seconds)
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def _check_alive(processes, busy, slots, inputs) -> None:
    for k, (run_index, fold) in busy.items():
        if not processes[k].is_alive():
            raise KitError(f"the inference process on {slots[k].device} died (exit code {processes[k].exitcode}) "
                           f"while predicting {inputs[run_index].name} fold {fold}; out of memory? try a smaller "
                           f"--batch-size")
