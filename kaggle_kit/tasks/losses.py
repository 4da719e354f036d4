"""Training losses. Each has a link that turns raw model outputs into predictions (sigmoid for BCE)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class RMSELoss(nn.Module):
    """Mean over targets of each column's RMSE: the MCRMSE metric made differentiable."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(((pred - target) ** 2).mean(dim=0) + self.eps).mean()


class PearsonLoss(nn.Module):
    """1 - Pearson r per column, averaged: optimises the ranking metric directly (needs batch >= 2)."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred_c = pred - pred.mean(dim=0)
        target_c = target - target.mean(dim=0)
        cov = (pred_c * target_c).sum(dim=0)
        denom = torch.sqrt((pred_c**2).sum(dim=0) * (target_c**2).sum(dim=0) + self.eps)
        return (1.0 - cov / denom).mean()


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class LossSpec:
    build: Callable[[], nn.Module]
    link: Callable[[torch.Tensor], torch.Tensor]
    description: str


LOSSES: dict[str, LossSpec] = {
    "rmse": LossSpec(RMSELoss, _identity, "mean over targets of per-column RMSE (MCRMSE)"),
    "mse": LossSpec(nn.MSELoss, _identity, "mean squared error"),
    "smoothl1": LossSpec(nn.SmoothL1Loss, _identity, "Huber-like, robust to label noise"),
    "bce": LossSpec(nn.BCEWithLogitsLoss, torch.sigmoid, "BCE with logits on [0,1] targets; predicts sigmoid"),
    "pearson": LossSpec(PearsonLoss, _identity, "1 - Pearson correlation per column"),
}


def get_loss(name: str) -> LossSpec:
    if name not in LOSSES:
        from kaggle_kit.errors import KitError

        raise KitError(f"--loss {name!r} is unknown; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]
