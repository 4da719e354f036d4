"""`predict_runs` (behind `kit predict` and the Kaggle notebook) against what training recorded, for every
registered plugin: a lost loss link, a row-order slip in sorted batching, padding that leaks into attention or
post-processing that differs from validation all change these numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from kaggle_kit.data.load import load_train
from kaggle_kit.predict.inference import predict_runs
from kaggle_kit.registry import all_competitions, get_competition
from tests.helpers import same_weights_atol

pytestmark = pytest.mark.e2e

# plugin -> (fixture of a finished tiny run, fixture of the data it was trained on)
TINY_RUNS = {"ell": ("ell_tiny_run", "ell_small_dir"), "uspppm": ("uspppm_tiny_run", "uspppm_small_dir")}


@pytest.fixture(params=sorted(all_competitions()))
def trained(request):
    name = request.param
    if name not in TINY_RUNS:
        pytest.fail(f"plugin {name!r} has no tiny run to check predictions against: add one to TINY_RUNS")
    run_fixture, data_fixture = TINY_RUNS[name]
    return get_competition(name), request.getfixturevalue(run_fixture), request.getfixturevalue(data_fixture)


def _fold_rows(comp, run: Path, data: Path) -> dict[int, pd.DataFrame]:
    """Each fold's validation rows of train.csv, shuffled (prediction must not depend on row order)."""
    id_col = comp.schema.id_column
    train = load_train(comp, data)
    folds = pd.read_csv(run / "folds.csv", dtype={id_col: str})
    fold_of = dict(zip(folds[id_col], folds["fold"], strict=True))
    train = train.assign(_fold=train[id_col].astype(str).map(fold_of))
    return {int(f): rows.drop(columns="_fold").sample(frac=1.0, random_state=int(f)).reset_index(drop=True)
            for f, rows in train.groupby("_fold")}


def test_predicting_a_folds_validation_rows_reproduces_its_oof(trained):
    comp, run, data = trained
    id_col, targets = comp.schema.id_column, comp.schema.target_names
    oof = pd.read_csv(run / "oof.csv", dtype={id_col: str}).set_index(id_col)
    spread = []
    for fold, rows in _fold_rows(comp, run, data).items():
        pred = predict_runs(comp, rows, [run], folds=[[fold]], data_dir=data)
        expected = oof.loc[rows[id_col].astype(str), targets].to_numpy()
        np.testing.assert_allclose(pred, expected, rtol=0, atol=same_weights_atol(), err_msg=f"fold {fold}")
        spread.append(np.ptp(expected, axis=0).min())
    # rows must differ by more than the tolerance, or a row-order slip would go unseen
    assert min(spread) > 100 * 1e-5


def _shortened(comp, df: pd.DataFrame) -> pd.DataFrame:
    """The same real rows with every input cut to a different number of words: lengths that need padding."""
    out = df.copy()
    for column in comp.schema.input_columns:
        out[column] = [" ".join(str(text).split()[: 2 + 5 * (i % 9)]) for i, text in enumerate(out[column])]
    return out


def test_batched_predictions_equal_one_row_at_a_time(trained):
    comp, run, data = trained
    rows = _shortened(comp, _fold_rows(comp, run, data)[0].head(40))
    batched = predict_runs(comp, rows, [run], folds=[[0]], data_dir=data, batch_size=64)
    single = predict_runs(comp, rows, [run], folds=[[0]], data_dir=data, batch_size=1)
    np.testing.assert_allclose(batched, single, rtol=0, atol=same_weights_atol())
    assert np.ptp(single, axis=0).min() > 100 * 1e-5


def _with_shifted_bias(run: Path, dest: Path, shift: float) -> Path:
    """A copy of the run whose output layers' biases are moved by `shift` in every fold."""
    shutil.copytree(run, dest)
    for weights in dest.glob("fold*.safetensors"):
        state = load_file(str(weights))
        state["fc.bias"] = state["fc.bias"] + shift
        save_file(state, str(weights), metadata={"format": "pt"})
    return dest


@pytest.mark.parametrize("shift", [50.0, -50.0])
def test_predictions_stay_in_each_targets_range_however_far_the_raw_outputs_go(trained, tmp_path, shift):
    """Far outside the range, only the loss's link (a sigmoid) or the plugin's post-processing (a clip) brings
    predictions back: each target's bound is what they must reach."""
    comp, run, data = trained
    rows = _fold_rows(comp, run, data)[0].head(8)
    pred = predict_runs(comp, rows, [_with_shifted_bias(run, tmp_path / "shifted", shift)], folds=[[0]],
                        data_dir=data)
    for i, target in enumerate(comp.schema.targets):
        bound = target.high if shift > 0 else target.low
        if bound is not None:
            np.testing.assert_allclose(pred[:, i], bound, atol=1e-6, err_msg=target.name)


def test_ensemble_weights_blend_the_runs_predictions(ell_tiny_run, ell_small_dir, tmp_path):
    comp = get_competition("ell")
    rows = load_train(comp, ell_small_dir).head(12)
    other = _with_shifted_bias(ell_tiny_run, tmp_path / "other", 0.3)
    first = predict_runs(comp, rows, [ell_tiny_run])
    second = predict_runs(comp, rows, [other])
    assert np.abs(second - first).min() > 0.1
    blended = predict_runs(comp, rows, [ell_tiny_run, other], weights=[1.0, 3.0])
    np.testing.assert_allclose(blended, 0.25 * first + 0.75 * second, rtol=0, atol=1e-5)
    only_first = predict_runs(comp, rows, [ell_tiny_run, other], weights=[1.0, 0.0])
    np.testing.assert_allclose(only_first, first, rtol=0, atol=1e-6)

