"""`kit pretrain`: the masked-LM loss falls on held-out windows, a resumed run ends where an unbroken one does,
and the output trains like any model folder."""

import json

import pytest
import torch
from safetensors.torch import load_file

from kaggle_kit.train.pretrain import PretrainSettings, masked_lm_loss, pretrain
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e
SETTINGS = PretrainSettings(max_len=64, epochs=2, batch_size=8, lr=3e-3, save_every=100, max_texts=16)


def test_the_masked_only_head_gives_the_plain_loss(tiny_bert):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from kaggle_kit.train.pretrain import batch_of, make_collator

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = AutoModelForMaskedLM.from_pretrained(str(tiny_bert))
    collator, whole_word = make_collator(tokenizer, SETTINGS, seed=0)
    rows = tokenizer(["a short essay about school", "another one, a little longer than the first"])["input_ids"]
    batch = batch_of(tokenizer, collator, rows, whole_word)
    torch.testing.assert_close(masked_lm_loss(model, batch), model(**batch).loss)


def test_pretraining_lowers_held_out_loss_resumes_exactly_and_trains_after(tiny_bert, ell_small_dir, tmp_path,
                                                                           capsys):
    texts = [ell_small_dir / "train.csv"]
    whole = pretrain(texts, tiny_bert, tmp_path / "whole", SETTINGS, "cpu", log_line=lambda _: None)
    assert whole["held_out_loss_after"] < whole["held_out_loss_before"] - 0.5

    stopped = pretrain(texts, tiny_bert, tmp_path / "resumed", SETTINGS, "cpu", stop_after=5,
                       log_line=lambda _: None)
    assert stopped == {"stopped_at": 5} and (tmp_path / "resumed" / "checkpoint" / "state.json").is_file()
    resumed = pretrain(texts, tiny_bert, tmp_path / "resumed", SETTINGS, "cpu", resume=True,
                       log_line=lambda _: None)
    assert resumed["held_out_loss_after"] == pytest.approx(whole["held_out_loss_after"], abs=1e-6)
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("whole", "resumed"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert json.loads((tmp_path / "whole" / "pretrain.json").read_text())["steps"] == whole["steps"]

    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tmp_path / "whole",
                           "--folds", "2", "--train-folds", "0", "--epochs", "1", "--max-len", "32",
                           "--out", tmp_path / "run")
    assert code == 0, err


def test_pretrain_refuses_a_used_folder_and_text_files_without_text(tiny_bert, tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    (tmp_path / "t.csv").write_text("id,body\n1,hello\n")
    code, _, err = run_kit(capsys, "pretrain", "--texts", tmp_path / "t.csv", "--model", tiny_bert,
                           "--out", tmp_path / "used")
    assert_one_line_error(code, err, "exists and is not empty")
    code, _, err = run_kit(capsys, "pretrain", "--texts", tmp_path / "t.csv", "--model", tiny_bert,
                           "--out", tmp_path / "new")
    assert_one_line_error(code, err, "no text column", "--text-column")
