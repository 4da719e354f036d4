"""Training losses. Each has a link that turns raw model outputs into predictions (sigmoid for BCE, softmax for
cross-entropy), says which target kinds it trains and how the output bias starts.

A plugin may add its own (`Competition(losses={"name": LossSpec(...)})`); `--loss` then accepts its names too,
and a run records the name, so prediction uses the same link.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from kaggle_kit.errors import KitError
from kaggle_kit.tasks.targets import Target, output_slices


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


class CrossEntropy(nn.Module):
    """Cross-entropy of one multiclass target: logits (n, K) against class indices (n,) (stored as floats)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, target.long(), label_smoothing=self.label_smoothing)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


BIAS_INITS = ("mean", "logit", "log_prior", "zero")


@dataclass(frozen=True)
class LossSpec:
    """A training loss and what goes with it.

    build: makes the loss module. Whole-matrix losses (per_target=False) get all outputs (n, n_outputs) and all
    labels (n, n_targets); per-target losses get one target's outputs (n, width) and its label column (n,) and
    are averaged over targets (cross-entropy: K logits against a class index).
    link: raw outputs -> predictions (per target block when per_target).
    kinds: the target kinds it trains. bias: where the output bias starts, from the training labels:
    "mean" (the label mean), "logit" (the logit of the mean: a rate under a sigmoid), "log_prior" (log class
    frequencies under a softmax), "zero".
    """

    build: Callable[[], nn.Module]
    link: Callable[[torch.Tensor], torch.Tensor]
    description: str
    kinds: tuple[str, ...] = ("regression", "binary")
    per_target: bool = False
    bias: str = "mean"

    def __post_init__(self) -> None:
        if self.bias not in BIAS_INITS:
            raise ValueError(f"LossSpec bias {self.bias!r} is not one of {', '.join(BIAS_INITS)}")
        if "multiclass" in self.kinds and not self.per_target:
            raise ValueError("a loss for multiclass targets must be per_target (K outputs, one label column)")


LOSSES: dict[str, LossSpec] = {
    "rmse": LossSpec(RMSELoss, _identity, "mean over targets of per-column RMSE (MCRMSE)"),
    "mse": LossSpec(nn.MSELoss, _identity, "mean squared error"),
    "smoothl1": LossSpec(nn.SmoothL1Loss, _identity, "Huber-like, robust to label noise"),
    "bce": LossSpec(nn.BCEWithLogitsLoss, torch.sigmoid, "BCE with logits on [0,1] targets or binary labels; "
                    "predicts sigmoid", bias="logit"),
    "pearson": LossSpec(PearsonLoss, _identity, "1 - Pearson correlation per column"),
    "cross-entropy": LossSpec(CrossEntropy, softmax, "cross-entropy over K classes; predicts softmax "
                              "probabilities", kinds=("multiclass",), per_target=True, bias="log_prior"),
}


def available_losses(plugin_losses: Mapping[str, Any] | None = None) -> dict[str, LossSpec]:
    """The built-ins plus a plugin's own (a plugin's name wins over a built-in's)."""
    return {**LOSSES, **dict(plugin_losses or {})}


def get_loss(name: str, plugin_losses: Mapping[str, Any] | None = None) -> LossSpec:
    losses = available_losses(plugin_losses)
    if name not in losses:
        raise KitError(f"--loss {name!r} is unknown; choose one of: {', '.join(losses)}")
    spec = losses[name]
    if not isinstance(spec, LossSpec):
        raise KitError(f"loss {name!r} is a {type(spec).__name__}, not a kaggle_kit.tasks.losses.LossSpec")
    return spec


def check_loss_trains(name: str, spec: LossSpec, targets: Sequence[Target], competition: str) -> None:
    """A loss that cannot train one of the targets is refused by name, with the losses that can."""
    for target in targets:
        if target.kind not in spec.kinds:
            raise KitError(f"--loss {name}: trains {', '.join(spec.kinds)} targets, and {competition}'s "
                           f"{target.name!r} is {target.kind}; use a loss for {target.kind} targets "
                           f"(e.g. {'cross-entropy' if target.kind == 'multiclass' else 'bce'})")


class TargetLoss(nn.Module):
    """A LossSpec applied to the model's outputs: to the whole matrix, or per target and averaged."""

    def __init__(self, spec: LossSpec, targets: Sequence[Target]):
        super().__init__()
        self.fn = spec.build()
        self.per_target = spec.per_target
        self.slices = output_slices(targets)

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.per_target:
            return self.fn(out, target)
        losses = [self.fn(out[:, columns], target[:, i]) for i, columns in enumerate(self.slices)]
        return losses[0] if len(losses) == 1 else torch.stack(losses).mean()


class DistillLoss(nn.Module):
    """(1 - w) x the hard-label loss + w x T^2 x KL(teacher || student) per multi-class target, both softened by T
    (Hinton et al.; T^2 keeps the soft term's gradients on the scale of the hard one's).

    The target matrix holds the class indices (one column per target) and then the teachers' softened class
    distributions (one column per output; NaN for rows no teacher predicted, which add nothing to the KL term: it
    is the taught rows' mean KL times their share of the batch, while the (1 - w) hard loss covers every row).
    A batch with the class indices only (no teacher columns) gets the hard loss alone, unweighted."""

    def __init__(self, hard: TargetLoss, targets: Sequence[Target], temperature: float, weight: float):
        super().__init__()
        self.hard = hard
        self.n_targets = len(targets)
        self.slices = output_slices(targets)
        self.temperature = temperature
        self.weight = weight

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hard = self.hard(out, target[:, :self.n_targets])
        if target.shape[1] == self.n_targets:
            return hard
        soft = target[:, self.n_targets:]
        taught = torch.isfinite(soft).all(dim=1)
        if not taught.any():
            return hard
        terms = []
        for columns in self.slices:
            teacher = soft[taught][:, columns]
            student = torch.log_softmax(out[taught][:, columns] / self.temperature, dim=-1)
            terms.append((teacher * (torch.log(teacher.clamp(min=1e-12)) - student)).sum(dim=1).mean())
        kl = torch.stack(terms).mean() * self.temperature**2 * taught.float().mean()
        return (1 - self.weight) * hard + self.weight * kl


def apply_link(spec: LossSpec, raw: torch.Tensor, targets: Sequence[Target]) -> torch.Tensor:
    """Raw model outputs -> predictions: the whole matrix at once, or each target's block (softmax per target)."""
    if not spec.per_target:
        return spec.link(raw)
    return torch.cat([spec.link(raw[:, columns]) for columns in output_slices(targets)], dim=1)


def initial_bias(y: np.ndarray, targets: Sequence[Target], spec: LossSpec) -> torch.Tensor:
    """The output bias to start from, so the head need not learn the offset first: the training labels' mean
    (or its logit under a sigmoid), a multiclass target's log class frequencies (add-one smoothed)."""
    mean = torch.as_tensor(y.mean(axis=0), dtype=torch.float32)
    if spec.bias in ("logit", "log_prior"):
        single = torch.logit(mean.clamp(1e-4, 1 - 1e-4))
    elif spec.bias == "zero":
        single = torch.zeros_like(mean)
    else:
        single = mean
    if all(t.kind != "multiclass" for t in targets):
        return single
    parts = []
    for i, target in enumerate(targets):
        if target.kind != "multiclass":
            parts.append(single[i:i + 1])
        elif spec.bias == "log_prior":
            counts = np.bincount(np.asarray(y[:, i], dtype=np.int64), minlength=target.width)
            parts.append(torch.log(torch.as_tensor((counts + 1) / (counts.sum() + target.width), dtype=torch.float32)))
        else:
            parts.append(torch.zeros(target.width))
    return torch.cat(parts)
