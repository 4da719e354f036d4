"""Hidden-test tolerance: which rows cannot be predicted, the fallback they get, and `kit predict --lenient`."""

import dataclasses
import json
import logging
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.predict import fallback as fb
from kaggle_kit.registry import get_competition
from kaggle_kit.runs.folder import RunDir
from tests.helpers import assert_one_line_error, run_kit

TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


def _counting(build):
    calls = []

    def counted(rows):
        calls.append(len(rows))
        return build(rows)

    return counted, calls


def _refuse_z99(rows: pd.DataFrame) -> list[str]:
    bad = rows["context"][rows["context"] == "Z99"]
    if len(bad):
        raise KitError(f"no title for context code 'Z99' (first in row id={rows['id'][bad.index[0]]})")
    return rows["context"].tolist()


def test_the_rows_a_builder_fails_on_are_found_in_a_few_builds():
    df = pd.DataFrame({"id": [f"r{i}" for i in range(1000)], "context": ["A47"] * 1000})
    build, calls = _counting(_refuse_z99)
    assert fb.failing_rows(build, df) == {} and calls == [1000]  # the normal path: one build of every row
    df.loc[[17, 503], "context"] = "Z99"
    build, calls = _counting(_refuse_z99)
    found = fb.failing_rows(build, df)
    assert sorted(found) == [17, 503]
    assert found[17] == "no title for context code 'Z99' (first in row id=r17)"
    assert len(calls) <= 4 * 10 + 1  # halving: a few builds per bad row, not one per row


def test_rows_that_fail_only_together_are_all_given_up_and_probes_are_bounded():
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "context": ["A47"] * 4})

    def needs_one_row(rows):
        if len(rows) > 1:
            raise ValueError("only one row at a time")
        return ["x"]

    assert sorted(fb.failing_rows(needs_one_row, df.head(2))) == [0, 1]

    def always(rows):
        raise KitError("titles file missing")

    found = fb.failing_rows(always, pd.concat([df] * 100, ignore_index=True), max_probes=7)
    assert len(found) == 400 and set(found.values()) == {"titles file missing"}


def test_empty_and_blank_texts_are_found_in_every_input_column():
    comp = get_competition("uspppm")
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "anchor": ["x", "", "x", "x"], "target": ["y", "y", " \n\t", "y"],
                       "context": ["A47", "A47", "A47", "A47"]})
    assert fb.empty_text_rows(comp, df) == {1: (fb.EMPTY_TEXT, "column 'anchor'"),
                                            2: (fb.EMPTY_TEXT, "column 'target'")}


def test_the_summary_counts_each_kind():
    rows = fb.FallbackRows(2700, {4: (fb.EMPTY_TEXT, "column 'full_text'"), 9: (fb.EMPTY_TEXT, "column 'full_text'"),
                               11: ("input could not be built", "unknown CPC context 'Z99'")})
    assert rows.summary() == ("3 of 2,700 test rows got the fallback prediction (2 empty text, 1 input could not be "
                              "built: unknown CPC context 'Z99')")


def test_a_plugin_declares_its_fallback_and_the_default_is_the_label_prior():
    ell, fbe = get_competition("ell"), get_competition("fbe")
    labels = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 5.0], [2.0, 2.0, 3.0, 4.0, 4.0, 5.0]])
    assert list(fb.fallback_record(ell, labels)["prediction"].values()) == [1.5, 2.0, 3.0, 4.0, 4.5, 5.0]
    assert "mean" in fb.fallback_record(ell, labels)["source"]
    classes = np.array([[0.0], [1.0], [1.0], [2.0]])  # Ineffective, Adequate, Adequate, Effective
    assert fb.fallback_record(fbe, classes)["prediction"] == {"Ineffective": 0.25, "Adequate": 0.5, "Effective": 0.25}
    constant = dataclasses.replace(ell, fallback=3.0)
    assert set(fb.fallback_record(constant, labels)["prediction"].values()) == {3.0}
    median = dataclasses.replace(ell, fallback=lambda y, targets: np.median(y, axis=0))
    assert list(fb.fallback_record(median, labels)["prediction"].values()) == [1.5, 2.0, 3.0, 4.0, 4.5, 5.0]
    for wrong, message in (((1.0, 2.0), "has 2 value(s); the plugin has 6 prediction column(s)"),
                           ("three", "not a number"), (float("nan"), "not finite")):
        with pytest.raises(KitError, match=re.escape(message)):
            fb.fallback_record(dataclasses.replace(ell, fallback=wrong), labels)


@pytest.mark.e2e
def test_training_records_the_fallback_and_older_runs_compute_it(ell_tiny_run, ell_small_dir, tmp_path, caplog):
    comp = get_competition("ell")
    recorded = json.loads((ell_tiny_run / "fallback.json").read_text())
    mean = pd.read_csv(ell_small_dir / "train.csv")[TARGETS].mean()
    assert np.allclose([recorded["prediction"][t] for t in TARGETS], mean.to_numpy())  # by column name
    old = tmp_path / "old"
    shutil.copytree(ell_tiny_run, old)
    (old / "fallback.json").unlink()
    with caplog.at_level(logging.WARNING):
        values, source = fb.run_fallback(comp, RunDir(old))
    assert np.allclose(values, mean.to_numpy()) and "computed from" in source and "train.csv" in source
    assert "has no fallback.json (trained before runs recorded one)" in caplog.text
    config = json.loads((old / "run_config.json").read_text())
    (old / "run_config.json").write_text(json.dumps({**config, "data": str(tmp_path / "gone")}))
    values, source = fb.run_fallback(comp, RunDir(old))
    oof = pd.read_csv(old / "oof.csv")[TARGETS].mean().clip(1, 5)
    assert np.allclose(values, oof.to_numpy()) and "oof.csv" in source
    (old / "oof.csv").unlink()
    values, source = fb.run_fallback(comp, RunDir(old))
    assert np.allclose(values, 3.0) and "neutral" in source


@pytest.mark.e2e
def test_kit_predict_lenient_gives_empty_and_blank_rows_the_fallback(ell_tiny_run, ell_small_dir, tmp_path, capsys):
    test = pd.read_csv(ell_small_dir / "test.csv", dtype=str, keep_default_na=False)
    bad = pd.DataFrame({"text_id": ["EMPTY1", "BLANK1"], "full_text": ["", "  \n\t "]})
    mixed = pd.concat([test.iloc[:1], bad.iloc[:1], test.iloc[1:], bad.iloc[1:]], ignore_index=True)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "good").mkdir()
    mixed.to_csv(tmp_path / "mixed" / "test.csv", index=False)
    test.to_csv(tmp_path / "good" / "test.csv", index=False)
    args = ("predict", "ell", "--run", ell_tiny_run, "--device", "cpu", "--input", tmp_path / "mixed" / "test.csv")
    code, _, err = run_kit(capsys, *args, "--output", tmp_path / "strict.csv")
    assert_one_line_error(code, err, "row 2 (text_id=EMPTY1), column 'full_text': empty input text")
    assert not (tmp_path / "strict.csv").exists()
    code, _, err = run_kit(capsys, *args, "--output", tmp_path / "lenient.csv", "--lenient")
    assert code == 0, err
    assert "2 of 5 test rows got the fallback prediction (2 empty text)" in err
    code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_tiny_run, "--device", "cpu", "--input",
                           tmp_path / "good" / "test.csv", "--output", tmp_path / "good.csv")
    assert code == 0, err
    lenient = pd.read_csv(tmp_path / "lenient.csv").set_index("text_id")
    good = pd.read_csv(tmp_path / "good.csv").set_index("text_id")
    fallback = json.loads((ell_tiny_run / "fallback.json").read_text())["prediction"]
    for row in ("EMPTY1", "BLANK1"):
        assert np.allclose(lenient.loc[row, TARGETS].to_numpy(float), [fallback[t] for t in TARGETS])
    assert np.abs(lenient.loc[good.index, TARGETS].to_numpy() - good[TARGETS].to_numpy()).max() <= 1e-5


@pytest.mark.e2e
def test_a_declared_fallback_that_does_not_fit_stops_training_before_it_starts(ell_small_dir, tiny_bert, tmp_path,
                                                                               capsys, monkeypatch):
    from kaggle_kit import registry

    comps = dict(registry.all_competitions())
    comps["ell"] = dataclasses.replace(comps["ell"], fallback=(3.0, 3.0))
    monkeypatch.setattr(registry, "all_competitions", lambda: comps)
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--epochs", "1", "--max-len", "32", "--out", tmp_path / "run")
    assert_one_line_error(code, err, "ell: the plugin's fallback has 2 value(s); the plugin has 6 prediction column(s)")
    assert not (tmp_path / "run" / "run_config.json").exists()


@pytest.mark.e2e
def test_when_every_row_is_unusable_every_row_gets_the_fallback(ell_tiny_run, monkeypatch):
    from kaggle_kit.predict import inference

    def never(*args, **kwargs):
        raise AssertionError("no row to predict, so no model is loaded")

    monkeypatch.setattr(inference, "predict_runs", never)
    df = pd.DataFrame({"text_id": ["a", "b"], "full_text": ["", " "]})
    preds, rows = fb.predict_with_fallback(get_competition("ell"), df, [ell_tiny_run], device="cpu")
    fallback = json.loads((ell_tiny_run / "fallback.json").read_text())["prediction"]
    assert np.allclose(preds, [[fallback[t] for t in TARGETS]] * 2)
    assert rows.summary() == "2 of 2 test rows got the fallback prediction (2 empty text)"


def test_rows_left_after_the_search_build_together():
    """B fails alone, A and D only together: blaming B alone would leave rows that still fail as a whole."""
    df = pd.DataFrame({"id": ["a", "b", "c", "d"], "context": ["A47"] * 4})

    def builder(rows):
        ids = set(rows["id"])
        if "b" in ids or {"a", "d"} <= ids:
            raise ValueError("cannot build")
        return rows["context"].tolist()

    found = fb.failing_rows(builder, df)
    assert 1 in found
    left = df.drop(index=list(found)).reset_index(drop=True)
    builder(left)  # what is left builds


def test_a_builder_result_that_is_not_one_text_per_row_is_a_failing_row(monkeypatch):
    class Plugin:
        @staticmethod
        def build_inputs(rows, ctx):
            return [float("nan") if c == "Z99" else c for c in rows["context"]]

    df = pd.DataFrame({"id": ["a", "b", "c"], "context": ["A47", "Z99", "B01"]})
    found = fb.failing_rows(lambda rows: fb._build(Plugin, None, rows), df)
    assert list(found) == [1] and "not a text" in found[1]
