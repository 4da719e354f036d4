"""The input pipeline: a torch DataLoader over the pre-tokenised ids.

Training batches are planned up front by the trainer (`FoldTrainer.batch_plan`: length-bucketed global batches,
drawn from the fold's seeded generator exactly as the single-process loop drew them, the same on every
data-parallel rank); `StageSampler` feeds one stage of that plan at a time, each rank taking its interleaved share
of every global batch (`shard_rows`). Padding happens in `__getitem__`, so with loader
workers (on CUDA) batches are built off the main thread and arrive in pinned memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from kaggle_kit.data.batching import collate, sorted_batches

# DataLoader workers per process on CUDA: padding a batch takes about a millisecond, two keep a GPU fed.
CUDA_LOADER_WORKERS = 2
# Padded tokens per inference batch on a CPU when --eval-max-tokens is not set: batches past this size run slower
# per token (their activations leave the caches: MiniLM on 2 cores, 16-32 rows of 256 tokens cost 15-20% more per
# token than 1-8 rows), and fewer rows per batch pad less (README "Measured (CPU)").
CPU_BATCH_TOKENS = 2048


@dataclass(frozen=True)
class BatchPlan:
    """One micro-batch of one rank: its rows, and the weight of its loss.

    The weight makes the data-parallel average of the ranks' losses equal the loss of the whole global batch
    (rows * world_size / global rows: 1 when the global batch splits evenly). A rank left without rows in a short
    last batch computes another rank's rows with weight 0, so every rank runs the same collectives.
    """

    rows: tuple[int, ...]
    weight: float = 1.0
    pseudo: bool = False  # a batch of pseudo-labelled rows (its weight includes --pseudo-weight)


def shard_rows(rows: np.ndarray, rank: int, world_size: int, scale: float = 1.0, pseudo: bool = False) -> BatchPlan:
    """Rank `rank`'s share of one global batch: every world_size-th row, so shards differ in size by one at most
    and have the same spread of lengths (no rank waits long for another). `scale` multiplies the weight (the
    pseudo-label weight)."""
    if world_size == 1:
        return BatchPlan(tuple(int(i) for i in rows), scale, pseudo)
    mine = rows[rank::world_size]
    if len(mine) == 0:
        return BatchPlan(tuple(int(i) for i in rows[:1]), 0.0, pseudo)
    return BatchPlan(tuple(int(i) for i in mine), scale * len(mine) * world_size / len(rows), pseudo)


class StageSampler(Sampler[BatchPlan]):
    """Yields the BatchPlans set in `plans` (one training stage, planned up front by the trainer): the trainer sets
    the next stage's plans before each `iter`, so one DataLoader (and its workers) serves every stage."""

    def __init__(self, plans: Sequence[BatchPlan] = ()):
        self.plans = list(plans)

    def __len__(self) -> int:
        return len(self.plans)

    def __iter__(self) -> Iterator[BatchPlan]:
        return iter(list(self.plans))


class TokenBatches(Dataset):
    """Indexed by a BatchPlan: the padded batch of its rows, with targets and the loss weight when there are
    targets. Holds only token id lists and a float array, so it pickles cheaply to loader workers."""

    def __init__(self, ids: Sequence[Sequence[int]], pad_id: int, y: np.ndarray | None = None):
        self.ids = ids
        self.pad_id = pad_id
        self.y = None if y is None else torch.as_tensor(y, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, plan: BatchPlan) -> dict[str, torch.Tensor | float]:
        rows = list(plan.rows)
        batch: dict[str, torch.Tensor | float] = dict(collate([self.ids[i] for i in rows], self.pad_id))
        if self.y is not None:
            batch["target"] = self.y[rows]
            batch["weight"] = plan.weight
            batch["pseudo"] = plan.pseudo
        return batch


def _identity(batch):
    return batch


def make_loader(dataset: TokenBatches, plans, device: torch.device, workers: int | None = None) -> DataLoader:
    """A DataLoader whose sampler yields BatchPlans (batching is the sampler's job, padding the dataset's).

    Workers and pinned memory only on CUDA: on a CPU the math needs every core and padding is cheap. The loader
    gets its own generator: iterating a DataLoader otherwise draws a worker seed from torch's global generator,
    which would shift dropout masks against the single-process loop.
    """
    cuda = device.type == "cuda"
    workers = (CUDA_LOADER_WORKERS if cuda else 0) if workers is None else workers
    return DataLoader(dataset, sampler=plans, batch_size=None, collate_fn=_identity, num_workers=workers,
                      pin_memory=cuda, persistent_workers=workers > 0, generator=torch.Generator())


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors to `device` without waiting (pinned memory makes the copy asynchronous)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def inference_plans(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[BatchPlan]:
    """Longest first (an out-of-memory error shows at once, not at the end), at most `max_tokens` padded tokens
    per batch when given."""
    return [BatchPlan(tuple(int(i) for i in rows)) for rows in sorted_batches(lengths, batch_size, max_tokens)]


def inference_batches(ids: Sequence[Sequence[int]], pad_id: int, plans: Sequence[BatchPlan], device: torch.device
                      ) -> Iterator[tuple[BatchPlan, dict[str, torch.Tensor]]]:
    """(plan, batch on `device`) for `plans` (from `inference_plans`), in their order; padded by loader workers on
    CUDA, inline on a CPU."""
    dataset = TokenBatches(ids, pad_id)
    if device.type != "cuda":
        for plan in plans:
            yield plan, to_device(dataset[plan], device)
        return
    workers = CUDA_LOADER_WORKERS if len(plans) > 4 else 0
    yield from zip(plans, (to_device(b, device) for b in make_loader(dataset, plans, device, workers)), strict=True)
