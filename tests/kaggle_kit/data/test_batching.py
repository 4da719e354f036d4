import numpy as np
import torch

from kaggle_kit.data.batching import bucketed_batches, collate, sorted_batches
from kaggle_kit.device import pick_device
from kaggle_kit.models.model import build_model, load_backbone_config
from kaggle_kit.predict.inference import infer


def test_bucketed_batches_cover_every_index_once_and_group_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 512, 1000)
    batches = bucketed_batches(lengths, 8, np.random.default_rng(1), bucket_factor=10)
    flat = np.concatenate(batches)
    assert sorted(flat) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_padded = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), 125))
    assert padded < 0.8 * random_padded
    again = bucketed_batches(lengths, 8, np.random.default_rng(1), bucket_factor=10)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_sorted_batches_longest_first():
    lengths = [3, 9, 1, 7, 5]
    batches = sorted_batches(lengths, 2)
    assert [list(b) for b in batches] == [[1, 3], [4, 0], [2]]


def test_collate_pads_right_with_mask():
    batch = collate([[1, 2, 3], [4]], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_infer_returns_input_order_and_matches_unbatched(tiny_bert):
    torch.manual_seed(0)
    model = build_model(load_backbone_config(tiny_bert, 0.0), 2, "mean", weights_from=tiny_bert)
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(1000, 2000, n)) for n in (5, 30, 12, 2, 19, 7)]
    batched = infer(model, ids, 0, 4, pick_device("cpu"), None)
    single = np.concatenate([infer(model, [x], 0, 1, pick_device("cpu"), None) for x in ids])
    assert np.allclose(batched, single, atol=1e-5)


def test_a_token_budget_shrinks_batches_of_long_rows_and_keeps_every_row_once():
    lengths = [100, 10, 90, 10, 10, 10, 10, 50]
    batches = sorted_batches(lengths, batch_size=8, max_tokens=200)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 200 or len(batch) == 1
    assert [len(b) for b in batches] == [2, 4, 2]  # 100+90 | 50,10,10,10 | 10,10
    assert sorted_batches([500], batch_size=4, max_tokens=10)[0].tolist() == [0]  # a row past the budget alone


def test_tail_tokens_keep_the_start_and_the_end_of_long_inputs(tiny_bert):
    from kaggle_kit.data.batching import tokenize
    from kaggle_kit.predict.inference import load_tokenizer

    tokenizer = load_tokenizer(tiny_bert)
    long_text = " ".join(f"word{i}" for i in range(300))
    full = tokenizer(long_text)["input_ids"]
    assert len(full) > 40
    head_only, head_tail = (tokenize(tokenizer, [long_text, "short text"], 32, tail_tokens=n) for n in (0, 10))
    assert head_only[0] == full[:31] + [tokenizer.sep_token_id]  # plain truncation: the text's end is lost
    assert head_tail[0] == full[:22] + full[-10:]  # the closing [SEP] stays last, the essay's end is kept
    assert head_tail[0][-1] == tokenizer.sep_token_id and len(head_tail[0]) == 32
    assert head_tail[1] == head_only[1] == tokenizer("short text")["input_ids"]


def test_a_run_predicts_with_the_tail_tokens_it_trained_with(tiny_bert):
    import pandas as pd

    from kaggle_kit.config import TrainConfig
    from kaggle_kit.predict.inference import build_model_inputs, load_tokenizer
    from kaggle_kit.registry import get_competition

    comp = get_competition("ell")
    tokenizer = load_tokenizer(tiny_bert)
    df = pd.DataFrame({"text_id": ["a"], "full_text": [" ".join(f"word{i}" for i in range(300))]})
    full = tokenizer(df["full_text"][0])["input_ids"]
    ids = build_model_inputs(comp, df, tokenizer, TrainConfig(max_len=32, tail_tokens=10), None, {})
    assert ids[0][-10:] == full[-10:] and ids[0][:22] == full[:22]


def test_tail_tokens_must_leave_room_for_the_start():
    import pytest
    from pydantic import ValidationError

    from kaggle_kit.config import TrainConfig

    with pytest.raises(ValidationError, match="--tail-tokens 64: must be below --max-len 64"):
        TrainConfig(max_len=64, tail_tokens=64)


def test_cut_flags_only_inputs_longer_than_max_len(tiny_bert):
    from kaggle_kit.data.batching import tokenize
    from kaggle_kit.predict.inference import load_tokenizer

    tokenizer = load_tokenizer(tiny_bert)
    texts = [" ".join(f"word{i}" for i in range(n)) for n in (2, 300)]
    exact_len = len(tokenizer(texts[0])["input_ids"])
    for tail in (0, 3):
        cut = []
        ids = tokenize(tokenizer, [texts[0], texts[1], "x"], exact_len, tail_tokens=tail, cut=cut)
        assert cut == [False, True, False], tail  # a text of exactly max_len tokens fills it without being cut
        assert [len(x) for x in ids][:2] == [exact_len, exact_len]
