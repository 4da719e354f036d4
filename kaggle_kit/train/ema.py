"""Exponential moving average of weights: often a free gain in CV, evaluated by swapping weights in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.model = model
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self) -> None:
        for name, param in self.model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach(), 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Swap the averaged weights in for the duration of the block, then put the live ones back."""
        live = {n: p.detach().clone() for n, p in self.model.named_parameters() if n in self.shadow}
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if name in self.shadow:
                    param.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.model.named_parameters():
                    if name in live:
                        param.copy_(live[name])
