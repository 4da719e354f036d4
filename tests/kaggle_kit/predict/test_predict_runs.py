"""`predict_runs` (behind `kit predict` and the Kaggle notebook) against what training recorded, for every
registered plugin: a lost loss link, a row-order slip in sorted batching, padding that leaks into attention or
post-processing that differs from validation all change these numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from kaggle_kit.data.load import load_train
from kaggle_kit.fileio import read_json, write_json
from kaggle_kit.predict.inference import (
    PredictionReport,
    build_model_inputs,
    load_tokenizer,
    predict_runs,
    run_files,
)
from kaggle_kit.registry import all_competitions, get_competition
from kaggle_kit.runs.folder import RunDir, weights_record
from kaggle_kit.tasks.targets import output_slices
from tests.helpers import same_weights_atol

pytestmark = pytest.mark.e2e

# plugin -> (fixture of a finished tiny run, fixture of the data it was trained on)
TINY_RUNS = {"ell": ("ell_tiny_run", "ell_small_dir"), "uspppm": ("uspppm_tiny_run", "uspppm_small_dir"),
             "fbe": ("fbe_tiny_run", "fbe_small_dir"), "aes2": ("aes2_tiny_run", "aes2_small_dir")}


@pytest.fixture(params=sorted(all_competitions()))
def trained(request):
    name = request.param
    if name not in TINY_RUNS:
        pytest.fail(f"plugin {name!r} has no tiny run to check predictions against: add one to TINY_RUNS")
    run_fixture, data_fixture = TINY_RUNS[name]
    return get_competition(name), request.getfixturevalue(run_fixture), request.getfixturevalue(data_fixture)


def _output_columns(comp) -> list[str]:
    return [column for target in comp.schema.targets for column in target.output_columns]


def _fold_rows(comp, run: Path, data: Path) -> dict[int, pd.DataFrame]:
    """Each fold's validation rows of train.csv, shuffled (prediction must not depend on row order)."""
    id_col = comp.schema.id_column
    train = load_train(comp, data)
    folds = pd.read_csv(run / "folds.csv", dtype={id_col: str})
    fold_of = dict(zip(folds[id_col], folds["fold"], strict=True))
    train = train.assign(_fold=train[id_col].astype(str).map(fold_of))
    return {int(f): rows.drop(columns="_fold").sample(frac=1.0, random_state=int(f)).reset_index(drop=True)
            for f, rows in train.groupby("_fold")}


def _as_test_rows(comp, rows: pd.DataFrame, data: Path, dest: Path, words=None) -> Path:
    """A copy of the data folder where train.csv's `rows` can be predicted as test rows: each per-row file (FBE's
    essays) copied from train/ to where test rows' files are, cut to `words(i)` words for the i-th file if given."""
    shutil.copytree(data, dest)
    for row_file in comp.row_files:
        for i, value in enumerate(rows[row_file.column].astype(str).unique()):
            text = row_file.path(data, "train", value).read_text(encoding="utf-8")
            if words is not None:
                text = " ".join(text.split()[: words(i)])
            target = row_file.path(dest, "test", value)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    return dest


def _without_fitted_postprocessor(run: Path, dest: Path) -> Path:
    """A copy of the run without postprocess.json: its predictions are what validation recorded in oof.csv
    (the post-processor is fitted on those, after the last fold)."""
    shutil.copytree(run, dest)
    (dest / "postprocess.json").unlink(missing_ok=True)
    return dest


def test_predicting_a_folds_validation_rows_reproduces_its_oof(trained, tmp_path):
    comp, run, data = trained
    id_col, columns = comp.schema.id_column, _output_columns(comp)
    oof = pd.read_csv(run / "oof.csv", dtype={id_col: str}).set_index(id_col)
    as_validated = _without_fitted_postprocessor(run, tmp_path / "run")
    spread = []
    for fold, rows in _fold_rows(comp, run, data).items():
        test_data = _as_test_rows(comp, rows, data, tmp_path / f"data{fold}")
        pred = predict_runs(comp, rows, [as_validated], folds=[[fold]], data_dir=test_data)
        expected = oof.loc[rows[id_col].astype(str), columns].to_numpy()
        np.testing.assert_allclose(pred, expected, rtol=0, atol=same_weights_atol(), err_msg=f"fold {fold}")
        spread.append(np.ptp(expected, axis=0).min())
        if (run / "postprocess.json").is_file():  # the run's fitted post-processor goes on top, nothing else
            record = json.loads((run / "postprocess.json").read_text())
            fitted = predict_runs(comp, rows, [run], folds=[[fold]], data_dir=test_data)
            assert not np.allclose(fitted, pred), "the fitted post-processor changed nothing"
            np.testing.assert_allclose(fitted, comp.postprocessor.apply(pred, record["state"], comp.schema.targets),
                                       rtol=0, atol=1e-12)
    # rows must differ by far more than the CPU tolerance, or a row-order slip would go unseen (the tiny FBE model
    # stays close to its class prior: about 5e-4 between its rows)
    assert min(spread) > 20 * 1e-5


def _shortened(comp, df: pd.DataFrame) -> pd.DataFrame:
    """The same real rows with every input cut to a different number of words: lengths that need padding."""
    out = df.copy()
    for column in comp.schema.input_columns:
        if any(column == row_file.column for row_file in comp.row_files):
            continue  # names a per-row file, cut in its copy by _as_test_rows
        out[column] = [" ".join(str(text).split()[: 2 + 5 * (i % 9)]) for i, text in enumerate(out[column])]
    return out


def test_batched_predictions_equal_one_row_at_a_time(trained, tmp_path):
    comp, run, data = trained
    rows = _shortened(comp, _fold_rows(comp, run, data)[0].head(40))
    test_data = _as_test_rows(comp, rows, data, tmp_path / "data", words=lambda i: 1 + 3 * (i % 5))
    cfg = RunDir(run).load_config()
    tokenizer = load_tokenizer(RunDir(run).tokenizer)
    ids = build_model_inputs(comp, rows, tokenizer, cfg, test_data, run_files(comp, RunDir(run), cfg, test_data))
    assert len({len(x) for x in ids}) >= 5, "the rows must need padding"
    batched = predict_runs(comp, rows, [run], folds=[[0]], data_dir=test_data, batch_size=64)
    single = predict_runs(comp, rows, [run], folds=[[0]], data_dir=test_data, batch_size=1)
    np.testing.assert_allclose(batched, single, rtol=0, atol=same_weights_atol())
    assert np.ptp(single, axis=0).min() > 20 * 1e-5


def _with_shifted_bias(run: Path, dest: Path, shift: float, column: int | None = None) -> Path:
    """A copy of the run whose output layers' biases are moved by `shift` in every fold (only output `column`'s
    when given)."""
    shutil.copytree(run, dest)
    for weights in dest.glob("fold*.safetensors"):
        state = load_file(str(weights))
        if column is None:
            state["fc.bias"] = state["fc.bias"] + shift
        else:
            state["fc.bias"][column] += shift
        save_file(state, str(weights), metadata={"format": "pt"})
        result = RunDir(dest).fold_result(int(weights.stem[4:]))  # deliberately new weights: recorded as such
        write_json(result, {**read_json(result), "weights": weights_record(weights)})
    return dest


@pytest.mark.parametrize("shift", [50.0, -50.0])
def test_predictions_stay_in_each_targets_range_however_far_the_raw_outputs_go(trained, tmp_path, shift):
    """Far outside the range, only the loss's link (a sigmoid, a softmax) or the plugin's post-processing (a clip)
    brings predictions back: a score must reach its target's bound, a class pushed up (down) must get all (none)
    of a distribution's probability."""
    comp, run, data = trained
    rows = _fold_rows(comp, run, data)[0].head(8)
    test_data = _as_test_rows(comp, rows, data, tmp_path / "data")
    run = _without_fitted_postprocessor(run, tmp_path / "run")  # fitted cuts or temperatures move the bounds
    pred = predict_runs(comp, rows, [_with_shifted_bias(run, tmp_path / "shifted", shift)], folds=[[0]],
                        data_dir=test_data)
    for target, block in zip(comp.schema.targets, output_slices(comp.schema.targets), strict=True):
        if target.kind == "regression":
            bound = target.high if shift > 0 else target.low
            assert bound is not None, f"{target.name}: a regression target without bounds is not checked here"
            np.testing.assert_allclose(pred[:, block.start], bound, atol=1e-6, err_msg=target.name)
        elif target.kind == "binary":
            assert ((pred[:, block.start] > 0.5) if shift > 0 else (pred[:, block.start] < 0.5)).all(), target.name
            assert ((pred[:, block] >= 0) & (pred[:, block] <= 1)).all(), target.name
    for target, block in zip(comp.schema.targets, output_slices(comp.schema.targets), strict=True):
        if target.kind != "multiclass":
            continue
        pushed = _with_shifted_bias(run, tmp_path / f"pushed-{target.name}", shift, column=block.start)
        probs = predict_runs(comp, rows, [pushed], folds=[[0]], data_dir=test_data)[:, block]
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6, err_msg=target.name)
        np.testing.assert_allclose(probs[:, 0], 1.0 if shift > 0 else 0.0, atol=1e-6, err_msg=target.name)


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



def test_the_deadline_guard_gets_the_mean_fold_time_of_the_folds_done(ell_tiny_run, ell_small_dir, tmp_path):
    comp = get_competition("ell")
    rows = load_train(comp, ell_small_dir).head(4)
    other = tmp_path / "other"
    shutil.copytree(ell_tiny_run, other)
    ticks = iter(range(0, 10_000, 7))  # every reading of the clock is 7 s after the previous one
    asked, stop_at = [], 3
    report = PredictionReport()

    def should_continue(done, total, elapsed, fold_seconds=None, parallel=1):
        asked.append((done, total, fold_seconds, parallel, list(report.seconds.values())))
        return done < stop_at

    predict_runs(comp, rows, [ell_tiny_run, other], device="cpu", should_continue=should_continue,
                 clock=lambda: float(next(ticks)), report=report)
    assert [a[0] for a in asked] == [1, 2, 3] and all(a[1] == 4 and a[3] == 1 for a in asked)
    for done, _, fold_seconds, _, seconds in asked:
        assert len(seconds) == done and fold_seconds == pytest.approx(np.mean(seconds))  # the mean, not the sum
    assert len(report.folds_used) == 3 and len(report.folds_skipped) == 1
