"""Label-token heads: a decoder answers with a label word, and its LM head's logits of those words are the output.

What won WSDM Cup 2025 and MAP 2025: after a prompt that ends with an answer cue ("Answer:"), score only the label
tokens' logits at the last real position. The pretrained LM head already maps "the next token is `Effective`"
to a direction of the hidden state, so the head starts from knowledge instead of from random weights.

The head computes hidden @ rows.T with `rows` = the LM head's rows of the label tokens only (no full-vocabulary
matmul). Those rows are a Parameter of their own, copied from the pretrained LM head when training starts: they
train, they are saved in the fold file (a few KB beside the adapters), and the base model's LM head is untouched.
Outputs per target: a multiclass target's class logits (cross-entropy/softmax apply as for a linear head); a
binary target's logit of the positive word minus the negative's; a regression target with a grid of values the
expected value of the softmax over its level words, so a score loss (rmse) trains it as it is.

Token ids are resolved once, at training, as the prompt produces them (the first token after the cue of
`cue + " " + word`), refused when two labels of a target share it, and recorded in run_config.json
(`label_tokens`): inference never derives them again. With --label-token-mode added, a word the tokenizer splits
gets a row of its own instead, started from the mean of its pieces' rows. The tokenizer gains no token for it:
a label token is only ever predicted, never read, so no input embedding is needed, and a text that happened to
hold an added token's literal string would otherwise look up an embedding row the base does not have.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kaggle_kit.errors import KitError
from kaggle_kit.tasks.targets import Target

log = logging.getLogger(__name__)

DEFAULT_LABEL_CUE = " Answer:"  # what ends every prompt when neither --label-cue nor the plugin's label_cue says


def default_label_words(target: Target) -> list[str]:
    """A class's own name; a score's level number (1..N over its grid, single digits up to 9 levels)."""
    if target.kind != "regression":
        return [str(c) for c in target.classes]
    grid = target.grid()
    if grid is None:
        raise KitError(f"--head label-tokens: regression target {target.name!r} declares no grid of values (low, "
                       f"high and step, or allowed), so it has no levels to name with label words")
    return [str(i + 1) for i in range(len(grid))]


def resolve_label_tokens(tokenizer, targets: Sequence[Target], cue: str,
                         declared: Mapping[str, Sequence[str]] | None = None,
                         mode: str = "first") -> list[dict[str, Any]]:
    """Per target its label words (the plugin's `label_words`, else the defaults) and their tokens as they follow
    the cue. `first`: a word's first token, refused when two share one. `added`: a word of one token keeps it; a
    word of several gets a row of its own (`pieces` records the tokens its row starts from, `ids` a new id past
    the vocabulary that names it)."""
    cue_ids = tokenizer(cue, add_special_tokens=False)["input_ids"]
    vocabulary = len(tokenizer)
    records, added = [], 0
    for target in targets:
        words = list((declared or {}).get(target.name) or default_label_words(target))
        ids, pieces = [], []
        for word in words:
            full = tokenizer(f"{cue} {word}", add_special_tokens=False)["input_ids"]
            if full[:len(cue_ids)] != cue_ids or len(full) == len(cue_ids):
                raise KitError(f"--label-cue {cue!r}: the tokenizer merges it with the label word {word!r} of "
                               f"{target.name!r}; end the cue with a separating character such as ':'")
            word_ids = full[len(cue_ids):]
            pieces.append(word_ids)
            if mode == "added" and len(word_ids) > 1:
                ids.append(vocabulary + added)
                added += 1
            else:
                ids.append(word_ids[0])
        seen: dict[int, str] = {}
        for word, token in zip(words, ids, strict=True):
            if token in seen:
                raise KitError(f"--head label-tokens: labels {seen[token]!r} and {word!r} of {target.name!r} start "
                               f"with the same token ({tokenizer.convert_ids_to_tokens(token)!r}) after the cue; "
                               f"--label-token-mode added gives each a row of its own")
            seen[token] = word
        tokens = [f"<label:{word}>" if token >= vocabulary else tokenizer.convert_ids_to_tokens(token)
                  for word, token in zip(words, ids, strict=True)]
        record: dict[str, Any] = {"target": target.name, "kind": target.kind, "words": words, "ids": ids,
                                  "tokens": tokens}
        if mode == "added":
            record["pieces"] = pieces
        if target.kind == "regression":
            record["values"] = [float(v) for v in target.grid()]
        records.append(record)
    return records


def initial_label_rows(backbone: nn.Module, model_path: Path | None, records: Sequence[dict[str, Any]]
                       ) -> torch.Tensor | None:
    """The label rows a run starts from: each label's token row of the pretrained LM head, or for a label with
    its own added row (`pieces`) the mean of its pieces' rows. None without a checkpoint (a random model)."""
    groups = [list(word) for r in records for word in (r["pieces"] if "pieces" in r else [[i] for i in r["ids"]])]
    needed = sorted({i for g in groups for i in g})
    rows = pretrained_lm_rows(backbone, model_path, needed)
    if rows is None:
        return None
    at = {token: k for k, token in enumerate(needed)}
    return torch.stack([rows[[at[i] for i in g]].mean(dim=0) for g in groups])


def pretrained_lm_rows(backbone: nn.Module, model_path: Path | None, ids: Sequence[int]) -> torch.Tensor | None:
    """The LM head's rows of `ids`: the input embeddings when the model ties them, else `lm_head.weight` read from
    the checkpoint (AutoModel loads no LM head). None when there is no checkpoint (a random model)."""
    config = backbone.config
    index = torch.as_tensor(list(ids), dtype=torch.long)
    if getattr(config, "tie_word_embeddings", True):
        weight = backbone.get_input_embeddings().weight
        return weight.detach()[index.to(weight.device)].float().cpu()
    if model_path is None:
        return None
    from safetensors import safe_open

    path = Path(model_path)
    index_file = path / "model.safetensors.index.json"
    if index_file.is_file():
        weight_map = json.loads(index_file.read_text())["weight_map"]
        name = next((k for k in weight_map if k == "lm_head.weight" or k.endswith(".lm_head.weight")), None)
        files = [path / weight_map[name]] if name else []
    else:
        files = [path / "model.safetensors"] if (path / "model.safetensors").is_file() else []
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            name = next((k for k in handle.keys() if k == "lm_head.weight" or k.endswith(".lm_head.weight")), None)
            if name is not None:
                rows = handle.get_slice(name)
                return torch.cat([rows[i:i + 1] for i in index.tolist()]).float()
    log.warning("--head label-tokens: %s holds no lm_head.weight (a headless checkpoint): the label rows start "
                "random instead of from the pretrained LM head", path)
    return None


class LabelTokenHead(nn.Module):
    """hidden (n, d) -> one output per regression/binary target, K per multiclass target, from the label rows."""

    def __init__(self, hidden: int, records: Sequence[dict[str, Any]], softcap: float | None = None):
        super().__init__()
        self.softcap = softcap  # Gemma-2's final_logit_softcapping: cap * tanh(logit / cap), as its LM head does
        self.records = [dict(r) for r in records]
        self.ids = [i for r in self.records for i in r["ids"]]
        self.label_rows = nn.Parameter(torch.zeros(len(self.ids), hidden))
        self.spans, start = [], 0
        for r in self.records:
            self.spans.append(slice(start, start + len(r["ids"])))
            start += len(r["ids"])
        for i, r in enumerate(self.records):
            if r["kind"] == "regression":
                self.register_buffer(f"values_{i}", torch.tensor(r["values"], dtype=torch.float32), persistent=False)
        self.out_features = sum(len(r["ids"]) if r["kind"] == "multiclass" else 1 for r in self.records)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = features @ self.label_rows.to(features.dtype).T
        if self.softcap:
            logits = self.softcap * torch.tanh(logits.float() / self.softcap)
        parts = []
        for i, (r, span) in enumerate(zip(self.records, self.spans, strict=True)):
            block = logits[:, span].float()
            if r["kind"] == "multiclass":
                parts.append(block)
            elif r["kind"] == "binary":
                parts.append(block[:, 1:2] - block[:, 0:1])
            else:
                values = getattr(self, f"values_{i}")
                parts.append(torch.softmax(block, dim=-1) @ values.unsqueeze(1))
        return torch.cat(parts, dim=1)
