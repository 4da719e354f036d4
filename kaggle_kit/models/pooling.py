"""Pooling heads: turn token states (B, T, H) into one vector per sequence."""

from __future__ import annotations

from typing import get_args

import torch
from torch import nn

from kaggle_kit.config import Pooling


def _mask(attention_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return attention_mask.unsqueeze(-1).to(like.dtype)


class MeanPooling(nn.Module):
    needs_hidden_states = False

    def __init__(self, hidden_size: int):
        super().__init__()
        self.out_dim = hidden_size

    def forward(self, last_hidden: torch.Tensor, attention_mask: torch.Tensor, hidden_states=None) -> torch.Tensor:
        mask = _mask(attention_mask, last_hidden)
        return (last_hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)


class MaxPooling(MeanPooling):
    def forward(self, last_hidden, attention_mask, hidden_states=None):
        masked = last_hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, torch.finfo(last_hidden.dtype).min)
        return masked.max(dim=1).values


class MinPooling(MeanPooling):
    def forward(self, last_hidden, attention_mask, hidden_states=None):
        masked = last_hidden.masked_fill(attention_mask.unsqueeze(-1) == 0, torch.finfo(last_hidden.dtype).max)
        return masked.min(dim=1).values


class CLSPooling(MeanPooling):
    def forward(self, last_hidden, attention_mask, hidden_states=None):
        return last_hidden[:, 0]


class LastTokenPooling(MeanPooling):
    """The state of the last real token: in a causal decoder the only position that has seen the whole input.

    Found from the attention mask, so it is right under left and right padding alike."""

    def forward(self, last_hidden, attention_mask, hidden_states=None):
        last = attention_mask.shape[1] - 1 - attention_mask.flip(1).to(torch.long).argmax(dim=1)
        return last_hidden[torch.arange(last_hidden.shape[0], device=last_hidden.device), last]


class AttentionPooling(nn.Module):
    """A learned score per token, softmax over the real (unpadded) tokens, weighted sum."""

    needs_hidden_states = False

    def __init__(self, hidden_size: int):
        super().__init__()
        self.out_dim = hidden_size
        self.score = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, last_hidden, attention_mask, hidden_states=None):
        logits = self.score(last_hidden).squeeze(-1).float()
        logits = logits.masked_fill(attention_mask == 0, float("-inf"))
        weights = torch.softmax(logits, dim=1).to(last_hidden.dtype).unsqueeze(-1)
        return (weights * last_hidden).sum(1)


class GeMPooling(MeanPooling):
    """Generalised mean over the real tokens, (mean x^p)^(1/p) with a learned p (3 to start): between mean (p=1)
    and max (p -> inf) pooling. States are clamped at a small positive floor so the power is defined (ELL 1st)."""

    def __init__(self, hidden_size: int, p: float = 3.0, eps: float = 1e-6):
        super().__init__(hidden_size)
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, last_hidden, attention_mask, hidden_states=None):
        mask = _mask(attention_mask, last_hidden).float()
        p = self.p.clamp(min=1.0)
        powered = last_hidden.float().clamp(min=self.eps).pow(p)
        return ((powered * mask).sum(1) / mask.sum(1).clamp(min=1e-6)).pow(1.0 / p).to(last_hidden.dtype)


class LSTMPooling(nn.Module):
    """A bidirectional LSTM over the real tokens, then their masked mean (ELL 1st, USPPPM 1st used LSTM heads)."""

    needs_hidden_states = False

    def __init__(self, hidden_size: int):
        super().__init__()
        self.out_dim = hidden_size
        self.lstm = nn.LSTM(hidden_size, hidden_size // 2, batch_first=True, bidirectional=True)
        self.mean = MeanPooling(2 * (hidden_size // 2))
        self.out_dim = 2 * (hidden_size // 2)

    def forward(self, last_hidden, attention_mask, hidden_states=None):
        lengths = attention_mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(last_hidden.float(), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=last_hidden.shape[1])
        return self.mean(out, attention_mask).to(last_hidden.dtype)


class WeightedLayerPooling(nn.Module):
    """Learned softmax weights over the last N layers, then a masked mean over tokens."""

    needs_hidden_states = True

    def __init__(self, hidden_size: int, n_layers: int = 4):
        super().__init__()
        self.out_dim = hidden_size
        self.n_layers = n_layers
        self.layer_weights = nn.Parameter(torch.zeros(n_layers))
        self.mean = MeanPooling(hidden_size)

    def forward(self, last_hidden, attention_mask, hidden_states=None):
        stacked = torch.stack(hidden_states[-self.n_layers :], dim=0)
        weights = torch.softmax(self.layer_weights, dim=0).to(stacked.dtype).view(-1, 1, 1, 1)
        return self.mean((weights * stacked).sum(0), attention_mask)


class ConcatLastFourPooling(nn.Module):
    """The [CLS] vectors of the last four layers, concatenated (4 * H features)."""

    needs_hidden_states = True

    def __init__(self, hidden_size: int, n_layers: int = 4):
        super().__init__()
        self.n_layers = n_layers
        self.out_dim = hidden_size * n_layers

    def forward(self, last_hidden, attention_mask, hidden_states=None):
        return torch.cat([h[:, 0] for h in hidden_states[-self.n_layers :]], dim=-1)


POOLINGS: dict[Pooling, type[nn.Module]] = {
    "mean": MeanPooling,
    "max": MaxPooling,
    "min": MinPooling,
    "cls": CLSPooling,
    "last-token": LastTokenPooling,
    "attention": AttentionPooling,
    "gem": GeMPooling,
    "lstm": LSTMPooling,
    "weighted-layer": WeightedLayerPooling,
    "concat-last4": ConcatLastFourPooling,
}


if set(POOLINGS) != set(get_args(Pooling)):  # the --pooling choices are declared once, in config.Pooling
    raise RuntimeError(f"pooling registry {sorted(POOLINGS)} differs from config.Pooling {sorted(get_args(Pooling))}")


def build_pooling(name: str, hidden_size: int, n_layers: int = 4) -> nn.Module:
    if name not in POOLINGS:
        from kaggle_kit.errors import KitError

        raise KitError(f"--pooling {name!r} is unknown; choose one of: {', '.join(POOLINGS)}")
    cls = POOLINGS[name]
    if cls in (WeightedLayerPooling, ConcatLastFourPooling):
        return cls(hidden_size, n_layers)
    return cls(hidden_size)
