import pytest
import torch

from kaggle_kit.errors import KitError
from kaggle_kit.models.pooling import POOLINGS, build_pooling

B, T, H, L = 3, 7, 8, 5


@pytest.fixture
def states():
    torch.manual_seed(0)
    hidden_states = tuple(torch.randn(B, T, H) for _ in range(L))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return hidden_states, mask


@pytest.mark.parametrize("name", list(POOLINGS))
def test_output_shape(name, states):
    hidden_states, mask = states
    pooling = build_pooling(name, H, n_layers=4)
    out = pooling(hidden_states[-1], mask, hidden_states)
    assert out.shape == (B, pooling.out_dim)
    assert pooling.out_dim == (4 * H if name == "concat-last4" else H)


@pytest.mark.parametrize("name", ["mean", "max", "min", "attention", "weighted-layer", "cls", "gem", "lstm"])
def test_padding_does_not_change_the_result(name, states):
    hidden_states, mask = states
    pooling = build_pooling(name, H)
    before = pooling(hidden_states[-1], mask, hidden_states)
    noisy = tuple(h.masked_fill(mask.unsqueeze(-1) == 0, 1e3) for h in hidden_states)
    after = pooling(noisy[-1], mask, noisy)
    assert torch.allclose(before, after, atol=1e-5)


def test_mean_max_min_cls_by_hand(states):
    hidden_states, mask = states
    last = hidden_states[-1]
    assert torch.allclose(build_pooling("mean", H)(last, mask)[2], last[2, :2].mean(0), atol=1e-6)
    assert torch.allclose(build_pooling("mean", H)(last, mask)[1], last[1, :4].mean(0), atol=1e-6)
    assert torch.allclose(build_pooling("max", H)(last, mask)[1], last[1, :4].max(0).values)
    assert torch.allclose(build_pooling("min", H)(last, mask)[2], last[2, :2].min(0).values)
    assert torch.equal(build_pooling("cls", H)(last, mask), last[:, 0])


def test_weighted_layer_starts_as_mean_of_layers(states):
    hidden_states, mask = states
    out = build_pooling("weighted-layer", H, n_layers=4)(hidden_states[-1], mask, hidden_states)
    expected = build_pooling("mean", H)(torch.stack(hidden_states[-4:]).mean(0), mask)
    assert torch.allclose(out, expected, atol=1e-6)


def test_concat_last4_is_cls_of_last_four_layers(states):
    hidden_states, mask = states
    out = build_pooling("concat-last4", H)(hidden_states[-1], mask, hidden_states)
    assert torch.equal(out, torch.cat([h[:, 0] for h in hidden_states[-4:]], dim=-1))


def test_unknown_pooling():
    with pytest.raises(KitError, match="--pooling 'sum' is unknown"):
        build_pooling("sum", H)


def test_gem_is_the_generalised_mean_of_the_real_tokens_with_a_learned_power(states):
    hidden_states, mask = states
    positive = hidden_states[-1].abs() + 0.1
    gem = build_pooling("gem", H)
    out = gem(positive, mask)
    expected = positive[1, :4].pow(3).mean(0).pow(1 / 3)  # p starts at 3
    assert torch.allclose(out[1], expected, atol=1e-5)
    assert (out[1] - positive[1, :4].mean(0)).abs().max() > 1e-2  # not the plain mean
    out.sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs() > 0  # the power is learned


def test_lstm_is_the_mean_of_a_bidirectional_lstm_over_each_rows_real_tokens(states):
    hidden_states, mask = states
    last = hidden_states[-1]
    lstm = build_pooling("lstm", H)
    out = lstm(last, mask)
    with torch.no_grad():
        for row, n in enumerate(mask.sum(1).tolist()):
            alone, _ = lstm.lstm(last[row:row + 1, :n])  # the row's real tokens only: no padding to pack
            assert torch.allclose(out[row], alone[0].mean(0), atol=1e-5)
    assert (out - build_pooling("mean", H)(last, mask)).abs().max() > 1e-2  # not the backbone's plain mean
