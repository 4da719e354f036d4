"""Tokenise once, then batch by length: dynamic padding wastes far fewer tokens than padding to max_len."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def tokenize(tokenizer, texts: Sequence[str], max_len: int, chunk: int = 1024, tail_tokens: int = 0,
             cut: list[bool] | None = None) -> list[list[int]]:
    """Token ids per text, at most max_len, unpadded: the tokenizer's own truncation (the first max_len tokens), or
    with `tail_tokens` the first max_len - tail_tokens and the last tail_tokens, the closing special token among
    them. `cut`, when given, receives per text whether it was longer than max_len (a text of exactly max_len tokens
    is not cut)."""
    ids: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        part = list(texts[start:start + chunk])
        enc = tokenizer(part, truncation=not tail_tokens, max_length=max_len, padding=False,
                        return_attention_mask=False, return_token_type_ids=False, verbose=False)["input_ids"]
        if cut is not None and not tail_tokens:
            full = [i for i, x in enumerate(enc) if len(x) == max_len]  # full or cut: only the whole text tells
            whole = tokenizer([part[i] for i in full], padding=False, return_attention_mask=False,
                              return_token_type_ids=False, verbose=False)["input_ids"] if full else []
            longer = {i for i, x in zip(full, whole, strict=True) if len(x) > max_len}
            cut.extend(i in longer for i in range(len(enc)))
        ids.extend(enc)
    if tail_tokens:
        if cut is not None:
            cut.extend(len(x) > max_len for x in ids)
        head = max_len - tail_tokens
        ids = [x if len(x) <= max_len else x[:head] + x[-tail_tokens:] for x in ids]
    return ids


def collate(ids: Sequence[Sequence[int]], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence in the batch (or to `pad_to`)."""
    width = pad_to or max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                     bucket_factor: int = 50) -> list[np.ndarray]:
    """Training batches of similar length that are still random: shuffle, sort within large chunks,
    cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    chunk = batch_size * bucket_factor
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Inference batches, longest first (an out-of-memory error shows up at once, not at the end).

    With `max_tokens`, a batch also stops growing before its padded size (rows x its longest row) passes the
    budget: long LLM inputs go a few at a time, short ones many at a time, at the same memory."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    if max_tokens is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    lengths = np.asarray(lengths)
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(batch_size, max_tokens // longest))
        batches.append(order[start:start + size])
        start += size
    return batches
