"""--head label-tokens end to end on CPU: a LoRA decoder scores label words; the fold file holds adapters and the
label rows only, and `kit predict` reproduces the OOF from them."""

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from kaggle_kit.runs.folder import weights_record
from tests.helpers import (
    assert_one_line_error,
    fold_rows_as_test,
    interrupted_copy,
    run_kit,
    same_weights_atol,
    train_tiny_lora,
)

pytest.importorskip("peft")
pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("competition, family, data_fixture", [
    ("ell", "tiny_llama", "ell_small_dir"),  # six ordinal scores, 1-5 in 0.5 steps: expected level
    ("fbe", "tiny_qwen2", "fbe_small_dir"),  # three classes: class logits
])
def test_label_token_run_ships_label_rows_and_predicts_its_oof(competition, family, data_fixture, request, tmp_path,
                                                               capsys):
    from kaggle_kit.registry import get_competition

    comp = get_competition(competition)
    data = request.getfixturevalue(data_fixture)
    base = request.getfixturevalue(family)
    run = tmp_path / "run"
    train_tiny_lora(capsys, competition, data, base, run, "--head", "label-tokens", lora_r=8, max_len=48)
    recorded = json.loads((run / "run_config.json").read_text())
    assert recorded["head"] == "label-tokens" and recorded["pooling"] == "last-token"
    assert [r["target"] for r in recorded["label_tokens"]] == comp.schema.target_names
    n_rows = sum(len(r["ids"]) for r in recorded["label_tokens"])
    state = load_file(str(run / "fold0.safetensors"))
    assert {k for k in state if "lora_" not in k} == {"fc.label_rows"}
    assert state["fc.label_rows"].shape[0] == n_rows

    test_dir = tmp_path / "fold0"
    rows = fold_rows_as_test(data, run, comp.schema.id_column, comp.schema.input_columns, 0, test_dir)
    if competition == "fbe":  # per-row essay files
        (test_dir / "test").symlink_to(data / "train")
    columns = [c for t in comp.schema.targets for c in t.submission_columns]

    def predict(name, *flags):
        code, _, err = run_kit(capsys, "predict", competition, "--run", run, "--input", test_dir / "test.csv",
                               "--output", tmp_path / name, *flags)
        assert code == 0, err
        sub = pd.read_csv(tmp_path / name, dtype={comp.schema.id_column: str}).set_index(comp.schema.id_column)
        return sub.loc[rows[comp.schema.id_column], columns].to_numpy()

    (run / "postprocess.json").unlink(missing_ok=True)  # fbe's fitted temperature: predict as validation did
    oof = pd.read_csv(run / "oof.csv", dtype={comp.schema.id_column: str}).set_index(comp.schema.id_column)
    first = predict("sub.csv")
    np.testing.assert_allclose(first, oof.loc[rows[comp.schema.id_column], columns].to_numpy(),
                               atol=same_weights_atol())
    np.testing.assert_allclose(predict("merged.csv", "--merge"), first, atol=1e-4)  # adapters folded in
    # the trained label rows are what predicts: zeroed in the file, every row's prediction moves
    state["fc.label_rows"].zero_()
    save_file(state, str(run / "fold0.safetensors"))
    result = json.loads((run / "folds" / "fold0.json").read_text())
    result["weights"] = weights_record(run / "fold0.safetensors")  # an honest re-save, not a damaged file
    (run / "folds" / "fold0.json").write_text(json.dumps(result))
    assert not np.allclose(predict("zeroed.csv"), first, atol=1e-4)


def test_label_tokens_refused_for_an_encoder(tiny_bert, ell_small_dir, tmp_path, capsys):
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--head",
                           "label-tokens", "--folds", "2", "--epochs", "1", "--out", tmp_path / "run")
    assert_one_line_error(code, err, "--head label-tokens", "not a decoder")


def test_a_label_token_run_blends_with_a_linear_run(ell_tiny_run, ell_small_dir, tiny_llama, tmp_path, capsys):
    run = tmp_path / "run"
    train_tiny_lora(capsys, "ell", ell_small_dir, tiny_llama, run, "--head", "label-tokens", train_folds=None)
    post = json.loads((run / "cv.json").read_text()).get("postprocess")  # the OOF calibration, when it gained
    assert (run / "postprocess.json").is_file() == (post is not None)
    assert post is None or post["name"] == "calibration"

    # kit predict applies a label-token run's calibration (no plugin post-processor declares it)
    line = {"name": "calibration", "state": {"calibration": {"cohesion": [0.0, 3.5]}}, "n_rows": 48}
    (run / "postprocess.json").write_text(json.dumps(line))
    code, _, err = run_kit(capsys, "predict", "ell", "--input", ell_small_dir / "test.csv", "--run", run,
                           "--output", tmp_path / "c.csv")
    assert code == 0, err
    calibrated = pd.read_csv(tmp_path / "c.csv")
    assert (calibrated["cohesion"] == 3.5).all() and (calibrated["syntax"] != 3.5).any()

    blend = tmp_path / "blend.json"
    code, _, err = run_kit(capsys, "ensemble", "ell", "--run", ell_tiny_run, "--run", run, "--out", blend,
                           "--max-steps", "4")
    assert code == 0, err
    code, _, err = run_kit(capsys, "predict", "ell", "--input", ell_small_dir / "test.csv", "--ensemble", blend,
                           "--output", tmp_path / "e.csv")
    assert code == 0, err
    assert np.isfinite(pd.read_csv(tmp_path / "e.csv").drop(columns="text_id").to_numpy()).all()


def test_label_tokens_refuse_another_pooling_and_the_frozen_mode(tiny_llama, ell_small_dir, tmp_path, capsys):
    base = ("train", "ell", "--data", ell_small_dir, "--model", tiny_llama, "--head", "label-tokens", "--folds", "2")
    code, _, err = run_kit(capsys, *base, "--pooling", "mean", "--out", tmp_path / "a")
    assert_one_line_error(code, err, "--pooling mean", "last real token")
    code, _, err = run_kit(capsys, *base, "--mode", "frozen", "--out", tmp_path / "b")
    assert_one_line_error(code, err, "--mode frozen")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_stopped_label_token_run_resumes_to_the_same_folds(ell_small_dir, tiny_llama, tmp_path, capsys):
    """--resume keeps the recorded label tokens and the finished fold's file, and trains the stopped fold to the
    same label rows and OOF predictions as the run that was not stopped."""
    run = tmp_path / "run"
    train_tiny_lora(capsys, "ell", ell_small_dir, tiny_llama, run, "--head", "label-tokens", train_folds=None)
    stopped = interrupted_copy(run, tmp_path / "stopped")
    fold0 = (stopped / "fold0.safetensors").read_bytes()
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", stopped)
    assert code == 0, err
    assert "fold 0: already finished" in err and (stopped / "fold0.safetensors").read_bytes() == fold0
    recorded = json.loads((run / "run_config.json").read_text())
    assert json.loads((stopped / "run_config.json").read_text())["label_tokens"] == recorded["label_tokens"]
    torch = pytest.importorskip("torch")
    rows, resumed = (load_file(str(r / "fold1.safetensors"))["fc.label_rows"] for r in (run, stopped))
    torch.testing.assert_close(resumed, rows, atol=same_weights_atol(), rtol=0)
    oof, again = (pd.read_csv(r / "folds" / "fold1_oof.csv") for r in (run, stopped))
    np.testing.assert_allclose(again.drop(columns="text_id").to_numpy(), oof.drop(columns="text_id").to_numpy(),
                               atol=same_weights_atol())


def test_added_label_tokens_train_ship_and_predict_their_oof(fbe_small_dir, tiny_llama, tmp_path, capsys,
                                                              monkeypatch):
    """Label words the MiniLM tokenizer splits with a shared first piece ("un ##kind", "un ##wise"): refused as
    first tokens, trained as rows of their own with --label-token-mode added, and `kit predict` reproduces the OOF."""
    import dataclasses

    from kaggle_kit import registry

    comp = dataclasses.replace(registry.get_competition("fbe"),
                               label_words={"discourse_effectiveness": ("unkind", "unwise", "kind")})
    monkeypatch.setitem(registry.all_competitions(), "fbe", comp)
    code, _, err = run_kit(capsys, "train", "fbe", "--data", fbe_small_dir, "--model", tiny_llama, "--head",
                           "label-tokens", "--lora-r", "4", "--folds", "2", "--out", tmp_path / "first")
    assert_one_line_error(code, err, "'unkind' and 'unwise'", "--label-token-mode added")
    run = train_tiny_lora(capsys, "fbe", fbe_small_dir, tiny_llama, tmp_path / "run", "--head", "label-tokens",
                          "--label-token-mode", "added", max_len=48)
    (record,) = json.loads((run / "run_config.json").read_text())["label_tokens"]
    assert record["tokens"][:2] == ["<label:unkind>", "<label:unwise>"] and len(record["pieces"][1]) == 2
    assert load_file(str(run / "fold0.safetensors"))["fc.label_rows"].shape[0] == 3

    test_dir = tmp_path / "fold0"
    rows = fold_rows_as_test(fbe_small_dir, run, "discourse_id", comp.schema.input_columns, 0, test_dir)
    (test_dir / "test").symlink_to(fbe_small_dir / "train")
    (run / "postprocess.json").unlink(missing_ok=True)  # the fitted temperature: predict as validation did
    code, _, err = run_kit(capsys, "predict", "fbe", "--run", run, "--input", test_dir / "test.csv", "--output",
                           tmp_path / "sub.csv")
    assert code == 0, err
    columns = list(comp.schema.targets[0].submission_columns)
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={"discourse_id": str}).set_index("discourse_id")
    oof = pd.read_csv(run / "oof.csv", dtype={"discourse_id": str}).set_index("discourse_id")
    ids = rows["discourse_id"]
    np.testing.assert_allclose(sub.loc[ids, columns].to_numpy(), oof.loc[ids, columns].to_numpy(),
                               atol=same_weights_atol())
