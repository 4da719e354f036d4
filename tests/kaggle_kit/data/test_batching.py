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


def test_infer_on_a_cpu_caps_batches_at_the_cpu_token_budget_with_the_same_outputs(tiny_bert, monkeypatch):
    """Without --eval-max-tokens a CPU batch holds at most CPU_BATCH_TOKENS padded tokens (bigger ones run slower
    per token there); the outputs equal those of the eval batch size's batches to 1e-6."""
    from kaggle_kit.predict import inference

    torch.manual_seed(0)
    model = build_model(load_backbone_config(tiny_bert, 0.0), 2, "mean", weights_from=tiny_bert)
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(1000, 2000, n)) for n in (30, 28, 30, 5, 29, 7, 30, 12)]
    cpu = pick_device("cpu")
    uncapped = infer(model, ids, 0, 8, cpu, None, max_tokens=10**9)
    shapes = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda input_ids, attention_mask: (
        shapes.append(tuple(input_ids.shape)), forward(input_ids, attention_mask))[1])
    monkeypatch.setattr(inference, "CPU_BATCH_TOKENS", 60)
    capped = infer(model, ids, 0, 8, cpu, None)
    assert shapes[0] == (2, 30) and all(rows * width <= 60 for rows, width in shapes), shapes
    assert sum(rows for rows, _ in shapes) == len(ids)
    np.testing.assert_allclose(capped, uncapped, rtol=0, atol=1e-6)


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


def _trained_tokenizer(texts, kind: str, **pre_options):
    """A small fast tokenizer trained here: SentencePiece-style (Unigram, Metaspace) or byte-level BPE (GPT/Llama
    style), each adding a special token at both ends as encoders do."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    if kind == "unigram":
        backend = Tokenizer(models.Unigram())
        backend.pre_tokenizer = pre_tokenizers.Metaspace(**pre_options)
        trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token="<unk>")
    else:
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, **pre_options)
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer)
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1),
                                                                                               ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


class _Recording:
    """A tokenizer that remembers the longest text it was asked to tokenise."""

    def __init__(self, tokenizer):
        self.tokenizer, self.longest = tokenizer, 0

    def __call__(self, texts, **options):
        self.longest = max([self.longest, *map(len, texts)])
        return self.tokenizer(texts, **options)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_tokenising_only_the_start_of_long_texts_gives_the_whole_texts_ids(ell_dir):
    """WordPiece (the embedded MiniLM), SentencePiece-style Unigram and byte-level BPE: the ids of `tokenize` equal
    the tokenizer's own truncation of the whole text, for real essays, short texts, a text too token-sparse for its
    start to fill max_len, a text without spaces, spaces in runs and newlines; while only starts are tokenised."""
    import pandas as pd

    from kaggle_kit.data.batching import HEAD_CHARS_PER_TOKEN, splits_at_spaces, tokenize
    from kaggle_kit.models.model import default_model_path
    from kaggle_kit.predict.inference import load_tokenizer

    essays = pd.read_csv(ell_dir / "train.csv", nrows=120)["full_text"].tolist()
    odd = ["short text", "", "understanding " * 400, "x" * 5000, "word  \n\n  next\tword " * 300,
           " leading space " * 200, "ünïcödé naïve café " * 200]
    for tokenizer in (load_tokenizer(default_model_path()), _trained_tokenizer(essays, "unigram"),
                      _trained_tokenizer(essays, "bpe")):
        assert splits_at_spaces(tokenizer)
        for max_len in (16, 64, 256):
            expected = tokenizer(essays + odd, truncation=True, max_length=max_len)["input_ids"]
            assert tokenize(tokenizer, essays + odd, max_len) == expected, (type(tokenizer).__name__, max_len)
        recording = _Recording(tokenizer)
        tokenize(recording, essays, 64)
        assert recording.longest <= 64 * HEAD_CHARS_PER_TOKEN < max(map(len, essays))  # only their starts


def test_tail_tokens_and_cut_flags_still_tokenise_whole_texts(tiny_bert):
    from kaggle_kit.data.batching import tokenize
    from kaggle_kit.predict.inference import load_tokenizer

    tokenizer = load_tokenizer(tiny_bert)
    texts = [" ".join(f"word{i}" for i in range(n)) for n in (3, 500)]
    full = tokenizer(texts)["input_ids"]
    assert tokenize(tokenizer, texts, 32, tail_tokens=10) == [full[0], full[1][:22] + full[1][-10:]]
    cut: list[bool] = []
    assert tokenize(tokenizer, texts, 32, cut=cut) == tokenizer(texts, truncation=True, max_length=32)["input_ids"]
    assert cut == [False, True]


def test_tokenizers_that_join_across_spaces_or_cut_on_the_left_tokenise_whole_texts(ell_dir):
    import pandas as pd

    from kaggle_kit.data.batching import splits_at_spaces, tokenize
    from kaggle_kit.models.model import default_model_path
    from kaggle_kit.predict.inference import load_tokenizer

    essays = pd.read_csv(ell_dir / "train.csv", nrows=40)["full_text"].tolist()
    across = _trained_tokenizer(essays, "unigram", split=False)
    assert not splits_at_spaces(across)
    assert not splits_at_spaces(_trained_tokenizer(essays, "bpe", use_regex=False))
    left = load_tokenizer(default_model_path())
    left.truncation_side = "left"
    assert not splits_at_spaces(left)
    for tokenizer in (across, left):
        recording = _Recording(tokenizer)
        assert tokenize(recording, essays, 64) == tokenizer(essays, truncation=True, max_length=64)["input_ids"]
        assert recording.longest == max(map(len, essays))


def test_predictions_from_essay_starts_equal_those_from_whole_essays(ell_tiny_run, ell_small_dir, monkeypatch):
    """predict_runs on a run of max_len 64: tokenising only the essays' starts (the default) and tokenising them
    whole give the same predictions to 1e-6."""
    from kaggle_kit.data import batching
    from kaggle_kit.data.load import load_train
    from kaggle_kit.predict.inference import predict_runs
    from kaggle_kit.registry import get_competition

    comp = get_competition("ell")
    df = load_train(comp, ell_small_dir)
    heads = []
    real_heads = batching._tokenize_heads
    monkeypatch.setattr(batching, "_tokenize_heads", lambda tok, texts, n: heads.append(n) or real_heads(tok, texts, n))
    from_starts = predict_runs(comp, df, [ell_tiny_run], device="cpu")
    assert heads == [64]
    monkeypatch.setattr(batching, "splits_at_spaces", lambda tokenizer: False)
    whole = predict_runs(comp, df, [ell_tiny_run], device="cpu")
    assert heads == [64]
    np.testing.assert_allclose(from_starts, whole, rtol=0, atol=1e-6)
