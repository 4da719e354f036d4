import numpy as np
import pytest
import torch

from kaggle_kit.errors import KitError
from kaggle_kit.tasks.losses import (
    LOSSES,
    LossSpec,
    PearsonLoss,
    RMSELoss,
    TargetLoss,
    apply_link,
    check_loss_trains,
    get_loss,
    initial_bias,
)
from kaggle_kit.tasks.targets import Target


def test_rmse_loss_is_mean_of_column_rmse():
    pred = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    target = torch.tensor([[2.0, 2.0], [3.0, 3.0]])
    expected = (np.sqrt(0.5) + np.sqrt(2.0)) / 2
    assert RMSELoss()(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_pearson_loss_matches_numpy():
    rng = np.random.default_rng(1)
    pred, target = rng.normal(size=(64, 1)), rng.normal(size=(64, 1))
    loss = PearsonLoss()(torch.tensor(pred), torch.tensor(target)).item()
    assert loss == pytest.approx(1 - np.corrcoef(pred[:, 0], target[:, 0])[0, 1], abs=1e-6)


def test_pearson_loss_has_gradient():
    pred = torch.randn(16, 1, requires_grad=True)
    PearsonLoss()(pred, torch.randn(16, 1)).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_bce_link_is_sigmoid_and_others_identity():
    x = torch.tensor([-2.0, 0.0, 3.0])
    assert torch.allclose(get_loss("bce").link(x), torch.sigmoid(x))
    for name in ("rmse", "mse", "smoothl1", "pearson"):
        assert torch.equal(LOSSES[name].link(x), x)


def test_every_loss_builds_and_returns_a_scalar():
    regression = [Target(name) for name in "abc"]
    multiclass = [Target("label", kind="multiclass", classes=("x", "y", "z"))]
    for name, spec in LOSSES.items():
        if "multiclass" in spec.kinds:
            targets, target = multiclass, torch.randint(0, 3, (8, 1)).float()
        else:
            targets, target = regression, torch.rand(8, 3)
        value = TargetLoss(spec, targets)(torch.rand(8, 3), target)
        assert value.ndim == 0 and torch.isfinite(value), name


def test_unknown_loss_is_a_clear_error():
    with pytest.raises(KitError, match="--loss 'huber2' is unknown"):
        get_loss("huber2")


def test_pearson_loss_on_a_batch_of_one_is_finite_and_inert():
    """A trailing batch of one row has no variance: the loss must not turn into NaN and poison the weights."""
    pred = torch.randn(1, 1, requires_grad=True)
    loss = PearsonLoss()(pred, torch.rand(1, 1))
    loss.backward()
    assert torch.isfinite(loss) and torch.all(pred.grad == 0)


EFFECT = Target("effect", kind="multiclass", classes=("a", "b", "c"))


def test_cross_entropy_is_per_target_and_its_link_a_softmax_per_target():
    spec = get_loss("cross-entropy")
    targets = [EFFECT, Target("second", kind="multiclass", classes=("x", "y"))]
    logits, labels = torch.randn(6, 5), torch.tensor([[0, 1], [2, 0], [1, 1], [0, 0], [2, 1], [1, 0]]).float()
    expected = (torch.nn.functional.cross_entropy(logits[:, :3], labels[:, 0].long())
                + torch.nn.functional.cross_entropy(logits[:, 3:], labels[:, 1].long())) / 2
    assert torch.allclose(TargetLoss(spec, targets)(logits, labels), expected)
    probs = apply_link(spec, logits, targets)
    assert torch.allclose(probs[:, :3].sum(dim=1), torch.ones(6)) and torch.allclose(probs[:, 3:].sum(dim=1),
                                                                                         torch.ones(6))
    assert torch.allclose(probs[:, :3], torch.softmax(logits[:, :3], dim=1))


def test_output_bias_starts_at_the_mean_the_rate_logit_or_the_log_priors():
    y = np.array([[3.0, 0], [4.0, 2], [5.0, 2], [4.0, 2]], dtype=np.float32)
    regression = [Target("a"), Target("b")]
    assert torch.equal(initial_bias(y, regression, get_loss("rmse")), torch.as_tensor(y.mean(axis=0)))
    rate = np.array([[0.0], [1.0], [1.0], [1.0]], dtype=np.float32)
    bias = initial_bias(rate, [Target("spam", kind="binary")], get_loss("bce"))
    assert torch.sigmoid(bias).item() == pytest.approx(0.75, abs=1e-6)
    bias = initial_bias(y[:, 1:], [EFFECT], get_loss("cross-entropy"))
    assert torch.allclose(torch.softmax(bias, dim=0), torch.tensor([2 / 7, 1 / 7, 4 / 7]))  # add-one smoothed


def test_a_loss_that_cannot_train_a_target_is_refused_with_one_that_can():
    with pytest.raises(KitError, match="--loss rmse: trains regression, binary targets, and fbe's 'effect' is "
                                       "multiclass; use a loss for multiclass targets \\(e.g. cross-entropy\\)"):
        check_loss_trains("rmse", get_loss("rmse"), [EFFECT], "fbe")
    with pytest.raises(KitError, match="'score' is regression"):
        check_loss_trains("cross-entropy", get_loss("cross-entropy"), [Target("score")], "x")


def test_a_plugins_losses_are_known_by_name_and_listed():
    mine = LossSpec(torch.nn.L1Loss, lambda x: x, "mean absolute error")
    assert get_loss("mae", {"mae": mine}) is mine
    with pytest.raises(KitError, match="choose one of: .*cross-entropy, mae"):
        get_loss("huber", {"mae": mine})
    with pytest.raises(KitError, match="not a kaggle_kit.tasks.losses.LossSpec"):
        get_loss("mae", {"mae": torch.nn.L1Loss})


def test_a_multiclass_loss_must_be_per_target():
    with pytest.raises(ValueError, match="must be per_target"):
        LossSpec(torch.nn.CrossEntropyLoss, lambda x: x, "x", kinds=("multiclass",))
