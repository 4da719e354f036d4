"""Label-token heads: the output is the LM head's logits of the recorded label tokens at the last real position."""

import pytest
import torch

from kaggle_kit.errors import KitError
from kaggle_kit.models.label_tokens import resolve_label_tokens
from kaggle_kit.models.model import build_model, load_backbone_config
from kaggle_kit.tasks.targets import Target

CLASSES = Target("label", kind="multiclass", classes=("Ineffective", "Adequate", "Effective"))
SCORE = Target("score", low=1.0, high=3.0, step=0.5)


@pytest.fixture(scope="module")
def causal_llama(tmp_path_factory):
    """A tiny random Llama saved WITH its (untied) LM head, as real checkpoints are."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from kaggle_kit.models.model import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("models") / "causal-llama"
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder, model, tokenizer


def _head_model(folder, records, n_outputs):
    config = load_backbone_config(folder, None)
    return build_model(config, n_outputs, "last-token", weights_from=folder, label_tokens=records).eval()


def test_resolved_ids_are_the_token_after_the_cue(causal_llama):
    _, _, tokenizer = causal_llama
    (record,) = resolve_label_tokens(tokenizer, [CLASSES], " Answer:")
    for word, token in zip(record["words"], record["ids"], strict=True):
        assert tokenizer(f" Answer: {word}", add_special_tokens=False)["input_ids"][2] == token
    (score,) = resolve_label_tokens(tokenizer, [SCORE], " Answer:")
    assert score["words"] == ["1", "2", "3", "4", "5"] and score["values"] == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert len(set(score["ids"])) == 5


def test_labels_sharing_a_first_token_are_refused(causal_llama):
    _, _, tokenizer = causal_llama
    clash = Target("label", kind="multiclass", classes=("effective one", "effective two"))
    with pytest.raises(KitError, match="start with the same token"):
        resolve_label_tokens(tokenizer, [clash], " Answer:")


def test_output_is_the_lm_logits_of_the_label_tokens_at_the_last_real_position(causal_llama):
    folder, causal, tokenizer = causal_llama
    records = resolve_label_tokens(tokenizer, [CLASSES], " Answer:")
    model = _head_model(folder, records, 3)
    ids = [tokenizer("short text Answer:")["input_ids"], tokenizer("a much longer text here Answer:")["input_ids"]]
    width = max(map(len, ids))
    right = torch.tensor([x + [0] * (width - len(x)) for x in ids])
    right_mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    with torch.no_grad():
        out = model(right, right_mask)
        for row, x in enumerate(ids):
            expected = causal(torch.tensor([x])).logits[0, -1, records[0]["ids"]]
            torch.testing.assert_close(out[row], expected, atol=1e-4, rtol=1e-4)
        # left padding: the last real token is the last position
        left = torch.tensor([[0] * (width - len(x)) + x for x in ids])
        left_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        expected = causal(left, attention_mask=left_mask).logits[:, -1][:, records[0]["ids"]]
        torch.testing.assert_close(model(left, left_mask), expected, atol=1e-4, rtol=1e-4)
        # another row of the LM head does not matter; a label row does
        model.fc.label_rows[1] += 1.0
        changed = model(right, right_mask)
    assert not torch.allclose(changed[:, 1], out[:, 1]) and torch.allclose(changed[:, [0, 2]], out[:, [0, 2]])


def test_a_score_is_the_expected_level(causal_llama):
    folder, causal, tokenizer = causal_llama
    records = resolve_label_tokens(tokenizer, [SCORE, CLASSES], " Answer:")
    model = _head_model(folder, records, 4)
    x = tokenizer("some essay Answer:")["input_ids"]
    with torch.no_grad():
        out = model(torch.tensor([x]), torch.ones(1, len(x), dtype=torch.long))[0]
        logits = causal(torch.tensor([x])).logits[0, -1]
    expected = torch.softmax(logits[records[0]["ids"]], -1) @ torch.tensor(records[0]["values"])
    torch.testing.assert_close(out[0], expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[1:], logits[records[1]["ids"]], atol=1e-4, rtol=1e-4)


def test_gemma2_logit_softcap_applies_as_in_its_lm_head(tmp_path):
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    from kaggle_kit.models.model import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = Gemma2Config(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8,
                          sliding_window=64, final_logit_softcapping=0.5)  # a small cap: it bends every logit
    torch.manual_seed(0)
    causal = Gemma2ForCausalLM(config).eval()
    causal.save_pretrained(str(tmp_path))
    records = resolve_label_tokens(tokenizer, [CLASSES], " Answer:")
    model = _head_model(tmp_path, records, 3)
    x = tokenizer("an element Answer:")["input_ids"]
    with torch.no_grad():
        out = model(torch.tensor([x]), torch.ones(1, len(x), dtype=torch.long))[0]
        expected = causal(torch.tensor([x])).logits[0, -1, records[0]["ids"]]
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_a_plugin_declares_its_label_words(causal_llama):
    import dataclasses

    from kaggle_kit.registry import get_competition

    _, _, tokenizer = causal_llama
    fbe = dataclasses.replace(get_competition("fbe"),
                              label_words={"discourse_effectiveness": ("bad", "okay", "good")})
    (record,) = resolve_label_tokens(tokenizer, fbe.schema.targets, " Answer:", fbe.label_words)
    assert record["words"] == ["bad", "okay", "good"]
    assert record["ids"] == [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("bad", "okay", "good")]
    with pytest.raises(ValueError, match="must be a tuple of 3 different words"):
        dataclasses.replace(fbe, label_words={"discourse_effectiveness": ("bad", "good")})
    with pytest.raises(ValueError, match="is not a target"):
        dataclasses.replace(fbe, label_words={"nope": ("a", "b", "c")})


def test_every_prompt_ends_with_the_cue_even_when_cut(causal_llama):
    import pandas as pd

    from kaggle_kit.config import TrainConfig
    from kaggle_kit.predict.inference import build_model_inputs
    from kaggle_kit.registry import get_competition

    _, _, tokenizer = causal_llama
    comp = get_competition("ell")
    df = pd.DataFrame({"text_id": ["a", "b"], "full_text": ["short essay.", "a long essay " * 40]})
    cfg = TrainConfig(head="label-tokens", max_len=16, label_cue=" Answer:")
    ids = build_model_inputs(comp, df, tokenizer, cfg, None, {})
    cue = tokenizer(cfg.label_cue, add_special_tokens=False)["input_ids"]
    assert all(x[-len(cue):] == cue for x in ids) and len(ids[1]) <= 16
    assert ids[0][0] == tokenizer.cls_token_id  # the opening special token stays; the closing [SEP] is dropped


SPLIT = Target("label", kind="multiclass", classes=("unkind", "unwise", "kind"))  # "un ##kind" and "un ##wise"


def test_added_mode_gives_split_words_a_row_started_from_the_mean_of_their_pieces(causal_llama):
    folder, causal, tokenizer = causal_llama
    with pytest.raises(KitError, match="label-token-mode added"):
        resolve_label_tokens(tokenizer, [SPLIT], " Answer:")
    (record,) = resolve_label_tokens(tokenizer, [SPLIT], " Answer:", mode="added")
    vocabulary = len(tokenizer)
    assert record["ids"][:2] == [vocabulary, vocabulary + 1] and record["ids"][2] < vocabulary
    assert record["tokens"][:2] == ["<label:unkind>", "<label:unwise>"] and len(record["pieces"][0]) == 2
    assert record["pieces"][2] == [record["ids"][2]]
    lm = causal.lm_head.weight.detach()
    model = _head_model(folder, [record], 3)
    rows = model.fc.label_rows.detach()
    for k, pieces in enumerate(record["pieces"]):
        torch.testing.assert_close(rows[k], lm[pieces].mean(dim=0))
    assert not torch.allclose(rows[0], rows[1])  # the words share a first piece, not their rows


def test_the_plugins_cue_is_what_the_label_tokens_follow_unless_label_cue_overrides(causal_llama):
    import dataclasses

    from kaggle_kit.config import TrainConfig
    from kaggle_kit.registry import get_competition
    from kaggle_kit.train.preflight import resolved_config

    folder, _, tokenizer = causal_llama
    config = load_backbone_config(folder, None)
    ell = get_competition("ell")
    scored = dataclasses.replace(ell, label_cue="\nOverall level:")

    def cue(comp, **settings):
        cfg = TrainConfig(head="label-tokens", **settings)
        return resolved_config(cfg, comp, "sample", torch.device("cpu"), config, folder).label_cue

    assert cue(scored) == "\nOverall level:" and cue(ell) == " Answer:"
    assert cue(scored, label_cue=" Grade:") == " Grade:"
    import pandas as pd

    from kaggle_kit.predict.inference import build_model_inputs

    cfg = resolved_config(TrainConfig(head="label-tokens", max_len=32), scored, "sample", torch.device("cpu"), config,
                          folder)
    (ids,) = build_model_inputs(scored, pd.DataFrame({"text_id": ["a"], "full_text": ["an essay."]}), tokenizer, cfg,
                                None, {})
    ending = tokenizer("\nOverall level:", add_special_tokens=False)["input_ids"]
    assert ids[-len(ending):] == ending  # the prompt ends with the plugin's cue: the label word is read after it
    with pytest.raises(ValueError, match="label_cue"):
        dataclasses.replace(ell, label_cue="  ")


def test_label_rows_train_at_the_head_rate_without_weight_decay(causal_llama):
    """Decay toward zero would shrink the pretrained LM head's rows the head starts from."""
    from kaggle_kit.models.model import llrd_param_groups

    folder, _, tokenizer = causal_llama
    model = _head_model(folder, resolve_label_tokens(tokenizer, [CLASSES], " Answer:"), 3)
    (group,) = [g for g in llrd_param_groups(model, 1e-4, 1e-3, 1.0, 0.01)
                if any(p is model.fc.label_rows for p in g["params"])]
    assert group["weight_decay"] == 0.0 and group["lr"] == 1e-3
