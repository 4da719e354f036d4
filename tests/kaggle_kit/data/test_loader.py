import numpy as np
import pytest
import torch

from kaggle_kit.data.batching import bucketed_batches
from kaggle_kit.data.loader import (
    StageSampler,
    TokenBatches,
    inference_batches,
    inference_plans,
    make_loader,
    shard_rows,
)


def stage_sampler(lengths, batch_size, rng, rank=0, world_size=1):
    """One epoch's plans as the trainer sets them: global bucketed batches, this rank's share of each."""
    return StageSampler([shard_rows(b, rank, world_size) for b in bucketed_batches(lengths, batch_size * world_size,
                                                                                    rng)])


def test_one_rank_takes_the_single_process_order_epoch_after_epoch():
    lengths = np.random.default_rng(0).integers(5, 300, 203)
    drawn, reference = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(3):  # the generator carries over from epoch to epoch, as in the loop before the DataLoader
        sampler = stage_sampler(lengths, 8, drawn)
        expected = bucketed_batches(lengths, 8, reference)
        assert [plan.rows for plan in sampler] == [tuple(b) for b in expected]
        assert [plan.rows for plan in sampler] == [tuple(b) for b in expected]  # a second iter yields the same
    assert len(sampler) == 26


@pytest.mark.parametrize("rows", [46, 37])  # global batches of 3 x 4 rows: the last holds 10 rows, or 1
def test_ranks_split_every_global_batch_and_weight_it_whole(rows):
    lengths = np.random.default_rng(1).integers(5, 300, rows)
    ranks = [list(stage_sampler(lengths, 4, np.random.default_rng(3), rank, 3)) for rank in range(3)]
    global_batches = bucketed_batches(lengths, 12, np.random.default_rng(3))
    assert all(len(r) == len(global_batches) for r in ranks)
    for step, batch in enumerate(global_batches):
        plans = [r[step] for r in ranks]
        real = [p for p in plans if p.weight > 0]
        assert sorted(i for p in real for i in p.rows) == sorted(batch)
        # DDP averages the ranks' weighted means: that must be the mean over the whole global batch
        assert np.isclose(sum(p.weight * lengths[list(p.rows)].mean() for p in real) / 3, lengths[batch].mean())


def test_a_rank_without_rows_computes_with_weight_zero():
    plan = shard_rows(np.array([5, 9]), rank=2, world_size=3)
    assert plan.weight == 0.0 and plan.rows == (5,)
    assert shard_rows(np.array([5, 9, 4]), 1, 3).rows == (9,)


def test_the_training_loader_pads_and_carries_targets_and_weights():
    ids = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]]
    y = np.arange(8, dtype=np.float32).reshape(4, 2)
    sampler = stage_sampler([len(x) for x in ids], 2, np.random.default_rng(0))
    loader = make_loader(TokenBatches(ids, 0, y), sampler, torch.device("cpu"))
    seen = []
    for batch in loader:
        width = batch["input_ids"].shape[1]
        padded = [x + [0] * (width - len(x)) for x in ids]
        rows = [padded.index(r) for r in batch["input_ids"].tolist()]
        assert batch["attention_mask"].sum().item() == sum(len(ids[i]) for i in rows)
        assert torch.equal(batch["target"], torch.as_tensor(y[rows])) and batch["weight"] == 1.0
        seen += rows
    assert sorted(seen) == [0, 1, 2, 3]


def test_inference_batches_run_longest_first():
    ids = [[1] * n for n in (3, 9, 1, 7)]
    plans = inference_plans([len(x) for x in ids], 2)
    order = [plan.rows for plan, _ in inference_batches(ids, 0, plans, torch.device("cpu"))]
    assert order == [(1, 3), (0, 2)]
