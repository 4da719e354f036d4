"""LoRA runs end to end on CPU: folds hold adapters and the head only, and `kit predict` reproduces the OOF."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers import assert_one_line_error, fold_rows_as_test, run_kit, same_weights_atol, train_tiny_lora

pytest.importorskip("peft")
pytestmark = pytest.mark.e2e


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
    train_tiny_lora(capsys, competition, data, base, run, lora_r=8)
    recorded = json.loads((run / "run_config.json").read_text())
    assert recorded["lora_r"] == 8 and recorded["base_model"]["files"]["model.safetensors"]["sha256"]
    fold_bytes = (run / "fold0.safetensors").stat().st_size
    assert fold_bytes < 0.25 * (base / "model.safetensors").stat().st_size

    test_dir = tmp_path / "fold0"
    rows = fold_rows_as_test(data, run, comp.schema.id_column, comp.schema.input_columns, 0, test_dir)
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
    train_tiny_lora(capsys, "ell", ell_small_dir, tiny_llama, run)
    code, _, err = run_kit(capsys, "predict", "ell", "--run", run, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "s.csv", "--base-model", tiny_qwen2)
    assert_one_line_error(code, err, "base model refused", "config.json differs")
    assert not (tmp_path / "s.csv").exists()
