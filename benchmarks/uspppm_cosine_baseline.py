"""The no-training baseline for USPPPM: cosine similarity of mean-pooled embeddings of anchor and target.

Scores the same validation fold that `kit train uspppm --preset quick` trains on (4 grouped folds, seed 42,
fold 0), so the two Pearson numbers are directly comparable. The context is ignored: a frozen sentence
embedding has no way to use it.

    python benchmarks/uspppm_cosine_baseline.py --data ../shared/data/uspppm [--model DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from kaggle_kit.data.load import load_train
from kaggle_kit.models.model import default_model_path
from kaggle_kit.registry import get_competition
from kaggle_kit.tasks.metrics import pearson


@torch.inference_mode()
def embed(phrases: list[str], tokenizer, model, batch_size: int = 256) -> np.ndarray:
    """Mean over non-padding tokens of the last hidden state, L2-normalised (sentence-transformers style)."""
    out = []
    for start in range(0, len(phrases), batch_size):
        enc = tokenizer(phrases[start:start + batch_size], padding=True, truncation=True, max_length=64,
                        return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)


def main() -> None:
    from transformers import AutoModel, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/uspppm"))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    comp = get_competition("uspppm")
    df = load_train(comp, args.data)
    folds = comp.fold_strategy(df, comp.schema.target_names, args.folds, args.seed)
    valid = df[folds == args.fold]
    model_path = args.model or default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    model = AutoModel.from_pretrained(str(model_path)).eval()

    started = time.monotonic()
    phrases = sorted(set(valid["anchor"]) | set(valid["target"]))
    vectors = dict(zip(phrases, embed(phrases, tokenizer, model), strict=True))
    cosine = np.array([vectors[a] @ vectors[t] for a, t in zip(valid["anchor"], valid["target"], strict=True)])
    r = pearson(valid["score"].to_numpy(dtype=np.float64), cosine)
    name = model_path.parent.name if model_path.name == "model" else model_path.name
    print(f"untrained {name} cosine(anchor, target): Pearson {r:.4f} on fold {args.fold} of "
          f"{args.folds} ({len(valid)} rows, {len(phrases)} phrases embedded in {time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    main()
