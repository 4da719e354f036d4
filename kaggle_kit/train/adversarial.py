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
        grad = self.weight.grad
        if grad is None:
            return
        norm = torch.linalg.vector_norm(grad)
        if norm == 0 or not torch.isfinite(norm):
            return
        self.backup = self.weight.data.clone()
        self.weight.data.add_(self.eps * grad / norm)

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
        eps = 1e-6
        for name, param in self.model.named_parameters():
            if not param.requires_grad or param.grad is None or self.param_filter not in name:
                continue
            self.backup[name] = param.data.clone()
            grad_norm = torch.linalg.vector_norm(param.grad)
            weight_norm = torch.linalg.vector_norm(param.data.detach())
            if grad_norm == 0 or not torch.isfinite(grad_norm):
                continue
            step = self.adv_lr * param.grad / (grad_norm + eps) * (weight_norm + eps)
            bound = self.adv_eps * param.data.abs()
            original = self.backup[name]
            param.data.add_(step)
            param.data.copy_(torch.min(torch.max(param.data, original - bound), original + bound))

    def restore(self) -> None:
        for name, param in self.model.named_parameters():
            if name in self.backup:
                param.data.copy_(self.backup[name])
        self.backup = {}
