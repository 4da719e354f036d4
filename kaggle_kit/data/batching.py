"""Tokenise once, then batch by length: dynamic padding wastes far fewer tokens than padding to max_len."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

# Characters of text kept per token of max_len when only a text's start is tokenised: ELL essays run 4.7 a token (95%
# of them at most 5.3, MiniLM WordPiece), so the kept start almost always holds max_len tokens; when it does not, the
# whole text is tokenised instead (the result is the same either way, only slower).
HEAD_CHARS_PER_TOKEN = 6
# Pre-tokenizers that split a text at every space: the tokens of a text's start up to a space are then the same
# whatever follows it (within each piece the model and the normalizers only see that piece's characters).
SPACE_SPLITTING = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "Metaspace", "ByteLevel"})


def tokenize(tokenizer, texts: Sequence[str], max_len: int, chunk: int = 1024, tail_tokens: int = 0,
             cut: list[bool] | None = None) -> list[list[int]]:
    """Token ids per text, at most max_len, unpadded: the tokenizer's own truncation (the first max_len tokens), or
    with `tail_tokens` the first max_len - tail_tokens and the last tail_tokens, the closing special token among
    them. `cut`, when given, receives per text whether it was longer than max_len (a text of exactly max_len tokens
    is not cut). Plain truncation tokenises only the start of long texts where the tokenizer allows it
    (`splits_at_spaces`): the same ids, a fraction of the work for essays far longer than max_len."""
    ids: list[list[int]] = []
    head_only = not tail_tokens and cut is None and splits_at_spaces(tokenizer)
    for start in range(0, len(texts), chunk):
        part = list(texts[start:start + chunk])
        if head_only:
            ids.extend(_tokenize_heads(tokenizer, part, max_len))
            continue
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


def splits_at_spaces(tokenizer) -> bool:
    """Whether a text's first max_len tokens can be had from its start alone: a fast tokenizer that truncates on
    the right and whose pre-tokenizer(s) all split at spaces (a SentencePiece Metaspace with split=False, or a
    byte-level BPE without its regex, tokenises across spaces and is left to the whole-text path)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.pre_tokenizer is None or getattr(tokenizer, "truncation_side", "right") != "right":
        return False
    pre = json.loads(backend.pre_tokenizer.__getstate__())
    members = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    return bool(members) and all(m.get("type") in SPACE_SPLITTING and m.get("split", True) and m.get("use_regex", True)
                                 for m in members)


def _head_end(text: str, max_len: int) -> int | None:
    """Where to cut `text` so that its start still holds max_len tokens: at a space (so no piece is split), or None
    to keep it whole (short, or no space to cut at)."""
    budget = max_len * HEAD_CHARS_PER_TOKEN
    if len(text) <= budget:
        return None
    end = text.rfind(" ", 0, budget)
    return end if end > 0 else None


def _tokenize_heads(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    """The tokenizer's own truncation to max_len, without tokenising the whole of long texts: each text is cut at a
    space well past max_len tokens first. Since the pre-tokenizer splits at spaces, the start's tokens are the
    whole text's first tokens; a start that fills max_len therefore truncates to the same ids, and a start that
    does not (an unusually token-dense text) is tokenised whole again."""
    def encode(part: list[str]) -> list[list[int]]:
        return tokenizer(part, truncation=True, max_length=max_len, padding=False, return_attention_mask=False,
                         return_token_type_ids=False, verbose=False)["input_ids"]

    ends = [_head_end(text, max_len) for text in texts]
    ids = encode([text if end is None else text[:end] for text, end in zip(texts, ends, strict=True)])
    short = [i for i, end in enumerate(ends) if end is not None and len(ids[i]) < max_len]
    for i, whole in zip(short, encode([texts[i] for i in short]) if short else [], strict=True):
        ids[i] = whole
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
