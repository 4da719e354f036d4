import numpy as np
import pytest
import torch

from kaggle_kit.errors import KitError
from kaggle_kit.tasks.losses import LOSSES, PearsonLoss, RMSELoss, TargetLoss, get_loss
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
