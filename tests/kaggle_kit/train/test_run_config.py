"""run_config.json is the whole truth of a run: an old run predicts the same way whatever its plugin says today."""

import dataclasses
import json
import shutil

import pandas as pd
import pytest

from kaggle_kit import registry
from kaggle_kit.fileio import sha256_file
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e


def test_the_run_records_every_setting_resolved(ell_tiny_run):
    recorded = json.loads((ell_tiny_run / "run_config.json").read_text())
    assert recorded["loss"] == "rmse" and recorded["input_format"] == "essay"
    assert recorded["precision"] in ("fp32", "fp16", "bf16")
    assert recorded["targets"] == [{"name": name, "kind": "regression"} for name in
                                   ("cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions")]
    assert recorded["competition"] == "ell" and recorded["competition_version"] == "1"
    assert recorded["pooling"] == "attention" and recorded["max_len"] == 64
    assert recorded["pooling_layers"] == 2  # the default 4, capped at the tiny model's depth and recorded so
    assert None not in (recorded["loss"], recorded["input_format"], recorded["data"])


def _edited_plugin(monkeypatch, name, **changes):
    """The plugin as if someone edited its defaults after the run was trained."""
    comps = dict(registry.all_competitions())
    comps[name] = dataclasses.replace(comps[name], **changes)
    monkeypatch.setattr(registry, "all_competitions", lambda: comps)


def _predict(capsys, comp, run, data, out):
    code, _, err = run_kit(capsys, "predict", comp, "--run", run, "--input", data / "test.csv", "--output", out)
    assert code == 0, err
    return pd.read_csv(out)


def test_editing_a_plugin_default_does_not_change_an_old_runs_predictions(ell_tiny_run, ell_small_dir, tmp_path,
                                                                           capsys, monkeypatch):
    before = _predict(capsys, "ell", ell_tiny_run, ell_small_dir, tmp_path / "before.csv")
    # a sigmoid link (bce) would squash every prediction into (0, 1) before the clip to [1, 5]
    _edited_plugin(monkeypatch, "ell", default_loss="bce", input_formats=("essay-v2", "essay"))
    after = _predict(capsys, "ell", ell_tiny_run, ell_small_dir, tmp_path / "after.csv")
    pd.testing.assert_frame_equal(before, after)


def test_a_run_recorded_with_bare_target_names_still_predicts(ell_tiny_run, ell_small_dir, tmp_path, capsys):
    """Runs made before targets had kinds recorded only their names: each is a regression target."""
    before = _predict(capsys, "ell", ell_tiny_run, ell_small_dir, tmp_path / "before.csv")
    old = tmp_path / "old-run"
    shutil.copytree(ell_tiny_run, old)
    config = json.loads((old / "run_config.json").read_text())
    config["targets"] = [t["name"] for t in config["targets"]]
    (old / "run_config.json").write_text(json.dumps(config))
    pd.testing.assert_frame_equal(before, _predict(capsys, "ell", old, ell_small_dir, tmp_path / "old.csv"))


def test_a_uspppm_run_carries_its_titles_and_predicts_a_test_file_anywhere(tmp_path, uspppm_small_dir, tiny_bert,
                                                                            capsys, monkeypatch):
    run = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "uspppm", "--data", uspppm_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--train-folds", "0", "--epochs", "1", "--max-len", "32", "--batch-size", "16", "--out", run)
    assert code == 0, err
    assert sha256_file(run / "data" / "cpc_titles.csv") == sha256_file(uspppm_small_dir / "cpc_titles.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("test.csv", "sample_submission.csv"):
        shutil.copy(uspppm_small_dir / name, elsewhere / name)
    first = _predict(capsys, "uspppm", run, elsewhere, tmp_path / "a.csv")
    # the plugin changes its default input format afterwards: the run keeps its own
    _edited_plugin(monkeypatch, "uspppm", input_formats=("anchor-target", "anchor-target-context"))
    second = _predict(capsys, "uspppm", run, elsewhere, tmp_path / "b.csv")
    pd.testing.assert_frame_equal(first, second)
    assert first["score"].between(0, 1).all()  # the run's bce link (sigmoid) is applied


def test_a_run_of_another_competition_is_refused_by_name(ell_tiny_run, uspppm_small_dir, tmp_path, capsys):
    code, _, err = run_kit(capsys, "predict", "uspppm", "--run", ell_tiny_run, "--input",
                           uspppm_small_dir / "test.csv", "--output", tmp_path / "s.csv")
    assert_one_line_error(code, err, "a run of 'ell', not of 'uspppm'", "kit predict ell")
    assert not (tmp_path / "s.csv").exists()


def test_an_empty_essay_in_test_csv_is_one_line(ell_tiny_run, tmp_path, capsys):
    (tmp_path / "test.csv").write_text("text_id,full_text\nA1,an essay\nA2,   \n")
    code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_tiny_run, "--input", tmp_path / "test.csv",
                           "--output", tmp_path / "s.csv")
    assert_one_line_error(code, err, "test.csv row 2 (text_id=A2), column 'full_text': empty input text")


def _unfinished_copy(run, dest):
    shutil.copytree(run, dest)
    for name in ("folds/fold1.json", "folds/fold1_oof.csv", "fold1.safetensors", "oof.csv", "cv.json"):
        (dest / name).unlink()
    return dest


def test_resume_refuses_a_flag_that_would_change_the_run(ell_tiny_run, tmp_path, capsys):
    run = _unfinished_copy(ell_tiny_run, tmp_path / "run")
    before = (run / "run_config.json").read_bytes()
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run, "--pooling", "mean")
    assert_one_line_error(code, err, "--pooling mean would change the run", "--pooling attention")
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run, "--max-len", "128")
    assert_one_line_error(code, err, "--max-len 128 would change the run", "--max-len 64")
    assert (run / "run_config.json").read_bytes() == before and not (run / "folds" / "fold1.json").exists()


def test_resume_takes_the_flags_that_cannot_change_results(ell_tiny_run, tmp_path, capsys):
    run = _unfinished_copy(ell_tiny_run, tmp_path / "run")
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run, "--eval-batch-size", "7",
                           "--threads", "1", "--pooling", "attention")
    assert code == 0, err
    assert (run / "folds" / "fold1.json").is_file()
    assert json.loads((run / "run_config.json").read_text())["pooling"] == "attention"


def test_damaged_run_files_are_one_line(ell_tiny_run, ell_small_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(ell_tiny_run, run)
    # a run made before fold results recorded their weight file's sha256: the file is found damaged when it loads
    record = json.loads((run / "folds" / "fold1.json").read_text())
    del record["weights"]
    (run / "folds" / "fold1.json").write_text(json.dumps(record))
    (run / "fold1.safetensors").write_bytes(b"not a safetensors file")
    args = ("predict", "ell", "--run", run, "--input", ell_small_dir / "test.csv", "--output", tmp_path / "s.csv")
    code, _, err = run_kit(capsys, *args)
    assert_one_line_error(code, err, "fold1.safetensors: cannot load these fold weights", "damaged")
    (run / "run_config.json").write_text("{ not json")
    code, _, err = run_kit(capsys, *args)
    assert_one_line_error(code, err, "run_config.json: not valid JSON", "damaged")
    assert not (tmp_path / "s.csv").exists()


def test_resume_refuses_changed_training_data(ell_tiny_run, ell_small_dir, tmp_path, capsys):
    run = _unfinished_copy(ell_tiny_run, tmp_path / "run")
    data = tmp_path / "data"
    shutil.copytree(ell_small_dir, data)
    with open(data / "train.csv", "a", encoding="utf-8") as handle:
        handle.write("ZZZ,one more essay,3,3,3,3,3,3\n")
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run, "--data", data)
    assert_one_line_error(code, err, "train.csv changed since the run started")
