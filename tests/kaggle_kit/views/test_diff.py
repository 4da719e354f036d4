"""`kit runs diff A B`: config differences, data / code / split, and CV per target and fold side by side."""

import json
import shutil

import pytest

from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e


def diff_json(capsys, root, a, b):
    code, out, err = run_kit(capsys, "runs", "diff", a, b, "--root", root, "--json")
    assert code == 0, err
    return json.loads(out)


def test_two_runs_of_one_competition(five_runs, capsys, monkeypatch):
    result = diff_json(capsys, five_runs, "a-attention", "b-mean")
    config = result["config"]
    assert config["pooling"] == {"a": "attention", "b": "mean"} and config["lr"] == {"a": 2e-5, "b": 1e-4}
    assert config["train_folds"] == {"a": None, "b": [0]} and config["max_len"] == {"a": 64, "b": 48}
    assert "seed" not in config and result["same_settings"] > 20
    assert result["data_differs"] is False and result["code_differs"] is False and result["same_split"] is True
    a = json.loads((five_runs / "ell" / "a-attention" / "cv.json").read_text())
    b = json.loads((five_runs / "ell" / "b-mean" / "cv.json").read_text())
    for target in a["per_target"]:
        assert result["per_target"][target] == {"a": a["per_target"][target], "b": b["per_target"][target]}
    assert result["per_target"]["overall"] == {"a": a["score"], "b": b["score"]}
    assert result["per_fold"] == {"fold0": {"a": a["folds"]["fold0"]["score"], "b": b["folds"]["fold0"]["score"]},
                                  "fold1": {"a": a["folds"]["fold1"]["score"], "b": None}}
    assert result["per_fold_per_target"]["b"]["fold0"] == b["folds"]["fold0"]["per_target"]

    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_kit(capsys, "runs", "diff", "a-attention", "b-mean", "--root", five_runs)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "data train.csv: same" in out and "code: same" in out and "folds: the same split" in out
    pooling = next(line for line in out.splitlines() if line.split()[:1] == ["pooling"])
    assert pooling.split() == ["pooling", "attention", "mean"]
    fold0 = next(line for line in out.splitlines() if line.split()[:1] == ["fold0"])
    fa, fb = a["folds"]["fold0"]["score"], b["folds"]["fold0"]["score"]
    assert fold0.split() == ["fold0", f"{fa:.4f}", f"{fb:.4f}", f"{fb - fa:+.4f}", "better" if fb < fa else "worse"]
    assert "A's scores cover folds 0,1 and B's fold 0" in out  # the pooled rows are not the same rows


def test_changed_data_and_code_are_flagged(five_runs, tmp_path, capsys, monkeypatch):
    other = shutil.copytree(five_runs / "ell" / "b-mean", tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["data"]["train.csv"]["sha256"] = "0" * 64
    manifest["git_commit"] = "1234567890abcdef"
    manifest["versions"]["torch"] = "1.0.0"
    (other / "manifest.json").write_text(json.dumps(manifest))
    folds = (other / "folds.csv").read_text().splitlines()
    (other / "folds.csv").write_text("\n".join([folds[0], *folds[:0:-1]]) + "\n")  # same rows, another order
    result = diff_json(capsys, five_runs, five_runs / "ell" / "b-mean", other)
    assert result["data_differs"] is True and result["code_differs"] is True and result["same_split"] is False
    assert result["versions"]["torch"]["b"] == "1.0.0"
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_kit(capsys, "runs", "diff", five_runs / "ell" / "b-mean", other)
    assert code == 0, err
    assert "data train.csv: DIFFERS" in out and "code: DIFFERS" in out and "torch: A" in out
    assert "DIFFERENT splits" in out


def test_runs_of_two_competitions_are_not_scored_against_each_other(five_runs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_kit(capsys, "runs", "diff", "ell/a-attention", "uspppm/d-bce", "--root", five_runs)
    assert code == 0, err
    assert "different competitions (ell vs uspppm): scores are not compared" in out
    assert "competition" in out and "data train.csv: DIFFERS" in out and "CV " not in out


def test_unknown_and_ambiguous_runs_are_one_line_errors(five_runs, tmp_path, capsys):
    code, _, err = run_kit(capsys, "runs", "diff", "a-attention", "nope", "--root", five_runs)
    assert_one_line_error(code, err, "run 'nope': no run folder of that name")
    shutil.copytree(five_runs / "ell" / "b-mean", tmp_path / "x" / "b-mean")
    shutil.copytree(five_runs / "ell" / "b-mean", tmp_path / "y" / "b-mean")
    code, _, err = run_kit(capsys, "runs", "diff", "b-mean", "x/b-mean", "--root", tmp_path)
    assert_one_line_error(code, err, "run 'b-mean' is ambiguous", "x/b-mean, y/b-mean")
    code, _, err = run_kit(capsys, "runs", "diff", tmp_path, "x/b-mean", "--root", tmp_path)
    assert_one_line_error(code, err, "not a kaggle-kit run folder")
