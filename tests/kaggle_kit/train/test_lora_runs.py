"""LoRA runs end to end on CPU: folds hold adapters and the head only, and `kit predict` reproduces the OOF."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers import assert_one_line_error, run_kit, same_weights_atol

pytest.importorskip("peft")
pytestmark = pytest.mark.e2e


def _fold_rows_as_test(data, run, comp_id, input_columns, fold, out):
    """The validation rows of `fold`, written as a test.csv (with a sample submission in the same order)."""
    train = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
    folds = pd.read_csv(run / "folds.csv", dtype={comp_id: str})
    rows = train[train[comp_id].isin(folds.loc[folds["fold"] == fold, comp_id])]
    out.mkdir()
    rows[[comp_id, *input_columns]].to_csv(out / "test.csv", index=False)
    return rows


@pytest.mark.parametrize("competition, family, data_fixture", [
    ("ell", "tiny_llama", "ell_small_dir"),
    ("uspppm", "tiny_qwen2", "uspppm_small_dir"),
])
def test_lora_run_saves_adapters_only_and_predicts_its_oof(competition, family, data_fixture, request, tmp_path,
                                                           capsys):
    from kaggle_kit.registry import get_competition

    comp = get_competition(competition)
    data = request.getfixturevalue(data_fixture)
    base = request.getfixturevalue(family)
    run = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", competition, "--data", data, "--model", base, "--lora-r", "8",
                           "--folds", "2", "--train-folds", "0", "--epochs", "1", "--max-len", "32",
                           "--batch-size", "16", "--lr", "1e-3", "--threads", "1", "--out", run)
    assert code == 0, err
    recorded = json.loads((run / "run_config.json").read_text())
    assert recorded["lora_r"] == 8 and recorded["base_model"]["files"]["model.safetensors"]["sha256"]
    fold_bytes = (run / "fold0.safetensors").stat().st_size
    assert fold_bytes < 0.25 * (base / "model.safetensors").stat().st_size

    test_dir = tmp_path / "fold0"
    rows = _fold_rows_as_test(data, run, comp.schema.id_column, comp.schema.input_columns, 0, test_dir)
    code, _, err = run_kit(capsys, "predict", competition, "--run", run, "--input", test_dir / "test.csv",
                           "--output", tmp_path / "sub.csv")
    assert code == 0, err
    sub = pd.read_csv(tmp_path / "sub.csv", dtype={comp.schema.id_column: str}).set_index(comp.schema.id_column)
    oof = pd.read_csv(run / "oof.csv", dtype={comp.schema.id_column: str}).set_index(comp.schema.id_column)
    targets = comp.schema.target_names
    np.testing.assert_allclose(sub.loc[rows[comp.schema.id_column], targets].to_numpy(),
                               oof.loc[rows[comp.schema.id_column], targets].to_numpy(), atol=same_weights_atol())


def test_predict_refuses_another_base_model(tiny_llama, tiny_qwen2, ell_small_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_llama, "--lora-r", "4",
                           "--folds", "2", "--train-folds", "0", "--epochs", "1", "--max-len", "32",
                           "--threads", "1", "--out", run)
    assert code == 0, err
    code, _, err = run_kit(capsys, "predict", "ell", "--run", run, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "s.csv", "--base-model", tiny_qwen2)
    assert_one_line_error(code, err, "base model refused", "config.json differs")
    assert not (tmp_path / "s.csv").exists()
