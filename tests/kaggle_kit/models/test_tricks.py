"""Heads and layer tricks from the winning solutions each change what trains: a test fails if one does nothing."""

import pytest
import torch

from kaggle_kit.config import TrainConfig
from kaggle_kit.models.model import (
    build_model,
    find_encoder_layers,
    freeze_bottom,
    load_backbone_config,
    reinit_top_layers,
)
from kaggle_kit.models.pooling import GeMPooling, LSTMPooling, MeanPooling
from kaggle_kit.train.trainer import make_optimizer


def _batch():
    ids = torch.tensor([[101, 2023, 2003, 1037, 102, 0, 0], [101, 7592, 2088, 2003, 2307, 2023, 102]])
    return ids, (ids != 0).long()


def _model(folder, pooling="mean"):
    torch.manual_seed(0)
    return build_model(load_backbone_config(folder, 0.0), 2, pooling, weights_from=folder)


def test_gem_pooling_is_between_mean_and_max_and_ignores_padding():
    states = torch.rand(2, 4, 3) + 0.1
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    gem = GeMPooling(3)(states, mask)
    mean = MeanPooling(3)(states, mask)
    assert torch.all(gem >= mean - 1e-6) and torch.all(gem <= states.max(dim=1).values + 1e-6)
    padded = states.clone()
    padded[0, 2:] = 100.0
    torch.testing.assert_close(GeMPooling(3)(padded, mask), gem)


def test_lstm_pooling_ignores_padding_and_trains():
    torch.manual_seed(0)
    pool = LSTMPooling(8)
    states = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = pool(states, mask)
    padded = states.clone()
    padded[0, 3:] = 50.0
    torch.testing.assert_close(pool(padded, mask), out)
    out.sum().backward()
    assert pool.lstm.weight_ih_l0.grad is not None and pool.lstm.weight_ih_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("pooling", ["gem", "lstm"])
def test_new_heads_run_inside_the_model(tiny_bert, pooling):
    model = _model(tiny_bert, pooling)
    assert model(*_batch()).shape == (2, 2)


def test_reinit_changes_exactly_the_top_layers(tiny_bert):
    model = _model(tiny_bert)
    _, layers = find_encoder_layers(model.backbone)
    before = [{k: v.clone() for k, v in layer.state_dict().items()} for layer in layers]
    reinit_top_layers(model, 1)
    after = [layer.state_dict() for layer in layers]
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert any(not torch.equal(before[-1][k], after[-1][k]) for k in before[-1])


def test_frozen_embeddings_and_bottom_layers_do_not_move_and_the_rest_does(tiny_bert):
    model = _model(tiny_bert)
    freeze_bottom(model, embeddings=True, layers_from_bottom=1)
    embeddings, layers = find_encoder_layers(model.backbone)
    frozen = {id(p) for module in (embeddings, layers[0]) for p in module.parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = make_optimizer(model, TrainConfig(lr=1e-2, head_lr=1e-2))
    model(*_batch()).pow(2).sum().backward()
    optimizer.step()
    for name, param in model.named_parameters():
        moved = not torch.equal(before[name], param)
        assert moved != (id(param) in frozen) or "pooler" in name, name
