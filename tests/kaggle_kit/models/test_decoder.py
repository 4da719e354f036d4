"""Decoders as backbones: last-token pooling under either padding side, a pad token where the tokenizer has none."""

import pytest
import torch

from kaggle_kit.models.decoder import is_decoder, prepare_tokenizer
from kaggle_kit.models.pooling import LastTokenPooling


def test_last_token_pooling_picks_the_last_real_token_under_left_and_right_padding():
    states = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    pool = LastTokenPooling(3)
    assert torch.equal(pool(states, right), torch.stack([states[0, 2], states[1, 4]]))
    assert torch.equal(pool(states, left), torch.stack([states[0, 4], states[1, 4]]))


def test_decoders_are_recognised_and_encoders_are_not(tiny_llama, tiny_qwen2, tiny_gemma2, tiny_bert, tiny_deberta):
    from transformers import AutoConfig

    for folder in (tiny_llama, tiny_qwen2, tiny_gemma2):
        assert is_decoder(AutoConfig.from_pretrained(str(folder)))
    for folder in (tiny_bert, tiny_deberta):
        assert not is_decoder(AutoConfig.from_pretrained(str(folder)))


def test_a_tokenizer_without_pad_token_pads_with_eos_on_the_right(tiny_llama):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    config = AutoConfig.from_pretrained(str(tiny_llama))
    assert tokenizer.pad_token is None
    tokenizer.padding_side = "left"
    prepare_tokenizer(tokenizer, config)
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "right"
    assert config.pad_token_id == tokenizer.pad_token_id


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_qwen2", "tiny_gemma2"])
def test_a_decoder_run_pools_the_last_token_by_default_and_refuses_cls(family, request, tmp_path, capsys,
                                                                          ell_small_dir):
    import json

    from tests.helpers import assert_one_line_error, run_kit

    model = request.getfixturevalue(family)
    common = ("train", "ell", "--data", ell_small_dir, "--model", model, "--folds", "2", "--train-folds", "0",
              "--epochs", "1", "--max-len", "32", "--threads", "1")
    code, _, err = run_kit(capsys, *common, "--pooling", "cls", "--out", tmp_path / "cls")
    assert_one_line_error(code, err, "--pooling cls", "attended to nothing but itself")
    code, _, err = run_kit(capsys, *common, "--out", tmp_path / "run")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["pooling"] == "last-token"
    assert "last-token pooling reads their last token, which is then mid-text" in err  # essays are cut at 32
    if family == "tiny_llama":
        code, _, err = run_kit(capsys, *common, "--tail-tokens", "8", "--out", tmp_path / "tail")
        assert code == 0, err
        assert json.loads((tmp_path / "tail" / "run_config.json").read_text())["tail_tokens"] == 8
        assert "mid-text" not in err
