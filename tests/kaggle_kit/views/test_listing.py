"""`kit runs`: the table of five runs of two competitions, including a dead one, at 80 columns; JSON, CSV,
filters and sorting."""

import csv
import io
import json
import shutil

import pytest

from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e


def cv_of(root, comp, name):
    return json.loads((root / comp / name / "cv.json").read_text())


def listing(capsys, root, *args):
    code, out, err = run_kit(capsys, "runs", *args, "--root", root, "--json")
    assert code == 0, err
    return json.loads(out)


def test_table_fits_80_columns_and_shows_every_run(five_runs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_kit(capsys, "runs", "--root", five_runs)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in
            ("a-attention", "b-mean", "c-dead", "d-bce", "e-mse") and "=" not in line}
    assert set(rows) == {"a-attention", "b-mean", "c-dead", "d-bce", "e-mse"}, out
    a_cv = cv_of(five_runs, "ell", "a-attention")["score"]
    assert rows["a-attention"].split()[1:3] == ["ell", "complete"] and f"{a_cv:.4f}" in rows["a-attention"]
    assert " 2/2 " in rows["a-attention"] and " 64 " in rows["a-attention"] and "tiny-bert" in rows["a-attention"]
    fold0 = json.loads((five_runs / "ell" / "c-dead" / "folds" / "fold0.json").read_text())["score"]
    assert "dead" in rows["c-dead"].split() and " 1/2 " in rows["c-dead"] and f"~{fold0:.4f}" in rows["c-dead"]
    assert rows["b-mean"].split()[2] == "complete" and " 1/1 " in rows["b-mean"] and " 48 " in rows["b-mean"]
    assert rows["d-bce"].split()[1:3] == ["uspppm", "complete"]
    # the settings that differ between the five, and not those they share
    differ = out[out.index("settings that differ:"):]
    for setting in ("pooling=attention", "pooling=mean", "lr=0.0001", "loss=mse", "fgm_eps=0.5"):
        assert setting in differ, differ
    assert "seed=" not in differ and "eval_batch_size=" not in differ


def test_json_reports_status_folds_and_cv_per_run(five_runs, capsys):
    runs = {r["name"]: r for r in listing(capsys, five_runs, "ell")}
    assert set(runs) == {"a-attention", "b-mean", "c-dead"}
    assert {n: r["status"] for n, r in runs.items()} == {"a-attention": "complete", "b-mean": "complete",
                                                         "c-dead": "dead"}
    a = cv_of(five_runs, "ell", "a-attention")
    assert runs["a-attention"]["cv"] == a["score"] and runs["a-attention"]["cv_pooled"] is True
    assert runs["a-attention"]["cv_per_target"] == a["per_target"]
    assert (runs["c-dead"]["folds_done"], runs["c-dead"]["folds_planned"]) == (1, 2)
    assert runs["c-dead"]["cv"] == a["folds"]["fold0"]["score"] and runs["c-dead"]["cv_pooled"] is False
    assert runs["b-mean"]["differs"]["pooling"] == "mean" and runs["a-attention"]["differs"]["pooling"] == "attention"
    assert all(r["metric"] == "MCRMSE" and r["greater_is_better"] is False for r in runs.values())
    assert runs["a-attention"]["elapsed_s"] > 0 and runs["a-attention"]["commit"]


@pytest.mark.parametrize("where, expected", [
    (["pooling=mean", "comp=ell"], {"b-mean"}),
    (["status=dead"], {"c-dead"}),
    (["status!=complete"], {"c-dead"}),
    (["model=tiny*"], {"a-attention", "b-mean", "c-dead", "d-bce", "e-mse"}),
    (["loss=mse"], {"e-mse"}),
    (["lr>=1e-4"], {"b-mean", "e-mse"}),
    (["max_len<48"], {"d-bce", "e-mse"}),
    (["folds<2"], {"b-mean", "c-dead", "e-mse"}),
])
def test_where_filters(five_runs, capsys, where, expected):
    args = [a for w in where for a in ("--where", w)]
    assert {r["name"] for r in listing(capsys, five_runs, *args)} == expected


def test_where_on_cv_is_numeric(five_runs, capsys):
    scores = {r["name"]: r["cv"] for r in listing(capsys, five_runs, "uspppm")}
    threshold = sum(scores.values()) / 2
    below = {r["name"] for r in listing(capsys, five_runs, "uspppm", "--where", f"cv<{threshold}")}
    assert below == {n for n, s in scores.items() if s < threshold} and 0 < len(below) < 2


def test_sort_cv_puts_the_best_first_in_each_competition(five_runs, capsys):
    runs = listing(capsys, five_runs, "--sort", "cv")
    ell = [r for r in runs if r["competition"] == "ell"]
    uspppm = [r for r in runs if r["competition"] == "uspppm"]
    assert [r["cv"] for r in ell] == sorted(r["cv"] for r in ell)  # MCRMSE: lower is better
    assert [r["cv"] for r in uspppm] == sorted((r["cv"] for r in uspppm), reverse=True)  # Pearson: higher
    reverse = listing(capsys, five_runs, "ell", "--sort", "cv", "--reverse")
    assert [r["name"] for r in reverse] == [r["name"] for r in ell][::-1]
    by_lr = listing(capsys, five_runs, "--sort", "lr")
    assert [r["config"]["lr"] for r in by_lr] == sorted(r["config"]["lr"] for r in by_lr)


def test_csv_has_the_columns_and_the_settings_that_differ(five_runs, capsys):
    code, out, err = run_kit(capsys, "runs", "--root", five_runs, "--csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 5
    assert {"name", "competition", "status", "model", "max_len", "folds_done", "cv", "elapsed_s", "commit",
            "pooling", "lr", "loss"} <= set(rows[0])
    by_name = {r["name"]: r for r in rows}
    assert by_name["c-dead"]["status"] == "dead" and by_name["e-mse"]["loss"] == "mse"
    assert float(by_name["d-bce"]["cv"]) == pytest.approx(cv_of(five_runs, "uspppm", "d-bce")["score"])


@pytest.mark.parametrize("args, fragments", [
    (["--where", "pooling"], ["--where 'pooling'", "expected KEY=VALUE"]),
    (["--where", "colour=red"], ["unknown key 'colour'"]),
    (["--sort", "colour"], ["--sort 'colour'", "unknown"]),
    (["--json", "--csv"], ["choose one"]),
])
def test_bad_options_are_one_line_errors(five_runs, capsys, args, fragments):
    code, _, err = run_kit(capsys, "runs", "--root", five_runs, *args)
    assert_one_line_error(code, err, *fragments)


def test_missing_root_is_one_line_error(tmp_path, capsys):
    code, _, err = run_kit(capsys, "runs", "--root", tmp_path / "nope")
    assert_one_line_error(code, err, "nope", "no such folder")


def test_no_runs_says_so(tmp_path, capsys):
    code, _, err = run_kit(capsys, "runs", "ell", "--root", tmp_path)
    assert code == 0 and "no runs under" in err


def test_a_narrow_console_puts_the_model_under_the_name_and_never_cuts_the_numbers(five_runs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "64")
    code, out, err = run_kit(capsys, "runs", "--root", five_runs)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 64, out
    assert "run / model" in out
    row = next(i for i, line in enumerate(lines) if line.startswith("a-attention"))
    assert lines[row + 1].strip() == "tiny-bert"
    cv = cv_of(five_runs, "ell", "a-attention")
    assert f" {cv['score']:.4f} " in lines[row] and " 2/2 " in lines[row] and "complete" in lines[row]


def test_a_lost_or_truncated_weight_file_marks_the_folds_cell(five_runs, tmp_path, capsys, monkeypatch):
    root = tmp_path / "runs"
    run = root / "ell" / "a-attention"
    shutil.copytree(five_runs / "ell" / "a-attention", run)
    assert listing(capsys, root)[0]["folds_damaged"] == []
    (run / "fold1.safetensors").unlink()
    assert listing(capsys, root)[0]["folds_damaged"] == [1]
    monkeypatch.setenv("COLUMNS", "120")
    code, out, err = run_kit(capsys, "runs", "--root", root)
    assert code == 0, err
    assert " 2/2! " in out and "weight file is missing or changed" in out, out
    (run / "fold1.safetensors").write_bytes(b"not the weights")
    assert listing(capsys, root)[0]["folds_damaged"] == [1]
