"""Adversarial training. Both perturb, let the caller run a second backward pass, then restore exactly."""

from __future__ import annotations

import torch
from torch import nn


class FGM:
    """Fast Gradient Method on the word embeddings: a step of size eps along the normalised gradient."""

    def __init__(self, model: nn.Module, embedding: nn.Embedding, eps: float = 1.0):
        self.model = model
        self.weight = embedding.weight
        self.eps = eps
        self.backup: torch.Tensor | None = None

    def attack(self) -> None:
        """No host sync: a zero or non-finite gradient norm gives a zero step instead of an early return."""
        grad = self.weight.grad
        if grad is None:
            return
        norm = torch.linalg.vector_norm(grad)
        self.backup = self.weight.data.clone()
        step = torch.where(_usable(norm), self.eps * grad / norm, 0.0)
        self.weight.data.add_(step)

    def restore(self) -> None:
        if self.backup is not None:
            self.weight.data.copy_(self.backup)
            self.backup = None


class AWP:
    """Adversarial Weight Perturbation: moves every weight matrix by adv_lr * |w| along its gradient,
    clipped to within adv_eps * |w| of the original, so flat minima are preferred."""

    def __init__(self, model: nn.Module, adv_lr: float = 1e-4, adv_eps: float = 1e-2, param_filter: str = "weight"):
        self.model = model
        self.adv_lr = adv_lr
        self.adv_eps = adv_eps
        self.param_filter = param_filter
        self.backup: dict[str, torch.Tensor] = {}

    def attack(self) -> None:
        """All perturbed tensors in a few batched (foreach) kernels, without reading any norm back to the host:
        a tensor whose gradient norm is zero or not finite is left where it is, as before."""
        eps = 1e-6
        names, params, grads = [], [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad and param.grad is not None and self.param_filter in name:
                names.append(name)
                params.append(param.data)
                grads.append(param.grad)
        if not params:
            return
        originals = [p.clone() for p in params]
        self.backup.update(zip(names, originals, strict=True))
        grad_norms = torch._foreach_norm(grads)
        weight_norms = torch._foreach_norm(params)
        for param, grad, original, grad_norm, weight_norm in zip(params, grads, originals, grad_norms, weight_norms,
                                                                 strict=True):
            step = self.adv_lr * grad / (grad_norm + eps) * (weight_norm + eps)
            param.add_(torch.where(_usable(grad_norm), step, 0.0))
            bound = self.adv_eps * original.abs()
            torch.minimum(torch.maximum(param, original - bound), original + bound, out=param)

    def restore(self) -> None:
        for name, param in self.model.named_parameters():
            if name in self.backup:
                param.data.copy_(self.backup[name])
        self.backup = {}


def _usable(norm: torch.Tensor) -> torch.Tensor:
    """A device-side test (no host sync) that a gradient norm can be divided by."""
    return torch.isfinite(norm) & (norm != 0)
