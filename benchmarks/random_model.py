"""A random-weight Hugging Face model folder of a real model's shape, for benchmarks on machines without a hub.

Speed and memory depend on the shape (layers, width, heads, attention kind), not on the trained weights, so a
deberta-v3-base-shaped model built from its config measures what deberta-v3-base would. The tokenizer is any local
one (default: the embedded all-MiniLM-L6-v2's WordPiece); the vocabulary is sized to it, so the embedding matrix
is smaller than the real model's (128k tokens for DeBERTa-v3): say so when quoting memory.

    python benchmarks/random_model.py --shape deberta-v3-base --out /tmp/deberta-v3-base-random
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHAPES = {
    "deberta-v3-xsmall": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "deberta-v3-small": dict(hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072),
    "deberta-v3-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "deberta-v3-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
DEBERTA_V3 = dict(model_type="deberta-v2", relative_attention=True, position_buckets=256, max_relative_positions=-1,
                  pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm",
                  share_att_key=True, max_position_embeddings=512, hidden_act="gelu", layer_norm_eps=1e-7,
                  type_vocab_size=0)


def build(shape: str, out: Path, tokenizer_dir: Path | None = None, seed: int = 0) -> Path:
    import torch
    from transformers import AutoModel, AutoTokenizer, DebertaV2Config

    if tokenizer_dir is None:
        from kaggle_kit.models.model import default_model_path

        tokenizer_dir = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    settings = {**DEBERTA_V3, **SHAPES[shape]}
    settings.pop("model_type")
    config = DebertaV2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id or 0, **settings)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="deberta-v3-base")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder [default: embedded MiniLM's]")
    args = parser.parse_args()
    path = build(args.shape, args.out, args.tokenizer)
    print(f"wrote a random {args.shape}-shaped model to {path}")


if __name__ == "__main__":
    main()
