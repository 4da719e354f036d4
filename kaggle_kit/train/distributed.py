"""Data-parallel training with torch.distributed, launched by torchrun (NCCL on GPUs, gloo on CPUs).

One process per device, every rank running the same folds with the same seed. The pieces the trainer needs live
here so that fit() stays a training loop: who this process is (`Dist`), the DDP wrapper, collectives that agree on
decisions and errors, and gathering sharded validation predictions back into row order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from kaggle_kit.errors import KitError

log = logging.getLogger(__name__)
T = TypeVar("T")
# Rank 0 alone evaluates the best checkpoint and writes files while the others wait at the next collective.
COLLECTIVE_TIMEOUT = dt.timedelta(minutes=60)


@dataclass(frozen=True)
class Dist:
    """This process's place among the data-parallel processes (one process, rank 0 of 1, when not launched)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def broadcast(self, value: T) -> T:
        """Rank 0's value on every rank."""
        if not self.active:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, value: T) -> list[T]:
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, value)
        return out

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.active:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def agree(self, step: Callable[[], T]) -> T:
        """Run `step` on every rank; if it fails on any, fail on all with the first failure's message.

        Without this a rank that fails its checks exits while the others wait forever at the next collective.
        Rank 0 raises the KitError (printed once as the `error:` line); the other ranks exit quietly with code 2.
        """
        if not self.active:
            return step()
        try:
            result, problem = step(), None
        except KitError as err:
            result, problem = None, str(err)
        problems = [(rank, p) for rank, p in enumerate(self.all_gather(problem)) if p is not None]
        if problems:
            rank, message = problems[0]
            if self.is_main:
                raise KitError(message if rank == 0 else f"rank {rank}: {message}")
            raise SystemExit(2)
        return result  # type: ignore[return-value]


SINGLE = Dist()


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("WORLD_SIZE" in os.environ and "RANK" in os.environ)


def from_env() -> Dist:
    """Rank and world size as torchrun sets them; a plain launch is rank 0 of 1."""
    if not launched_by_torchrun():
        return SINGLE
    return Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


def setup(device_name: str) -> Dist:
    """Join the process group torchrun started (NCCL for CUDA, gloo for CPU); a plain launch returns SINGLE.

    Under torchrun each process takes the GPU of its local rank, so `--device cuda:N` cannot be honoured; the GPUs a
    node uses are chosen with CUDA_VISIBLE_DEVICES (what `kit train --nproc-per-node N --devices LIST` sets).
    """
    dist = from_env()
    if not dist.active:
        return dist
    if torch.distributed.is_initialized():
        return dist
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if cuda:
        if ":" in device_name:
            raise KitError(f"--device {device_name}: under torchrun every process takes the GPU of its local rank; "
                           f"use --device cuda and choose the GPUs with CUDA_VISIBLE_DEVICES (or --devices)")
        if not torch.cuda.is_available():
            raise KitError(f"--device {device_name}: CUDA is not available on this machine")
        if dist.local_rank >= torch.cuda.device_count():
            raise KitError(f"local rank {dist.local_rank}: this machine has {torch.cuda.device_count()} visible "
                           f"GPU(s); launch at most that many processes per node")
        torch.cuda.set_device(dist.local_rank)
    torch.distributed.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return dist


def training_device(dist: Dist, device: torch.device) -> torch.device:
    """The device of this rank: its local GPU under torchrun, else the one asked for."""
    if dist.active and device.type == "cuda":
        return torch.device("cuda", dist.local_rank)
    return device


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def quiet_other_ranks(dist: Dist) -> None:
    """Only rank 0 talks: the others log errors only (rank 0 gives the same warnings) and show no progress bars."""
    if dist.is_main:
        return
    logging.getLogger().setLevel(logging.ERROR)


def check_same_data(dist: Dist, *arrays: Sequence | np.ndarray) -> None:
    """Every rank must see the same rows, targets and folds: a node with another copy of the data would train on
    something else silently."""
    if not dist.active:
        return
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    digests = dist.all_gather(digest.hexdigest())
    different = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if different and not dist.is_main:
        raise SystemExit(2)  # rank 0 says why
    if different:
        raise KitError(f"rank {different[0]} sees other training data than rank 0 (rows, targets or folds differ); "
                       f"every node needs the same train.csv, model and settings")


def unused_parameters(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[str]:
    """Parameters that get no gradient (BERT's pooler, for one): DDP waits for their gradients forever unless told.

    One forward and backward on a real batch finds them; the random state is restored so that training draws the
    same dropout masks as without this probe.
    """
    devices = [batch["input_ids"].device] if batch["input_ids"].is_cuda else []
    with torch.random.fork_rng(devices=devices):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).float().sum().backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    return unused


def wrap(model: nn.Module, dist: Dist, device: torch.device, probe_batch: dict[str, torch.Tensor]) -> nn.Module:
    """DistributedDataParallel around `model` (the model itself with one process).

    Parameters that get no gradient are frozen first: the optimizer skips parameters without gradients anyway, so
    training is unchanged, and DDP can skip the slow unused-parameter search every step. Buffers are not
    broadcast each step: the encoder's (position ids) never change.
    """
    if not dist.active:
        return model
    for name in unused_parameters(model, probe_batch):
        model.get_parameter(name).requires_grad_(False)
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    # torch >= 2.13 renamed the switch; both leave buffers to the identical copies every rank built.
    buffers = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel.__init__).parameters else {"broadcast_buffers": False})
    return DistributedDataParallel(model, device_ids=device_ids, **buffers)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """No gradient all-reduce for passes before the last of an optimizer step (DDP's no_sync): the gradients add
    up locally and the step's last backward synchronises their sum."""
    if sync or not hasattr(model, "no_sync"):
        yield
    else:
        with model.no_sync():
            yield


def shard_for_rank(order: np.ndarray, dist: Dist) -> np.ndarray:
    """Rows (in `order`, longest first) this rank predicts: every world_size-th, so every rank has as many tokens."""
    return order[dist.rank::dist.world_size]


def gather_rows(dist: Dist, rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """Each rank's predictions for its rows, put back together in row order on every rank."""
    if not dist.active:
        return values
    out = np.zeros((n_rows, *values.shape[1:]), dtype=values.dtype)
    for part_rows, part_values in dist.all_gather((rows, values)):
        out[part_rows] = part_values
    return out


def torchrun_command(nproc_per_node: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command line that runs `python -m kaggle_kit ARGV` in `nproc_per_node` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc_per_node),
            "-m", "kaggle_kit", *argv]
