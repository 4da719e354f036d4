"""The CLI's contract: bad input is one `error:` line, exit code 2, and no run folder left behind."""

import pytest

from tests.helpers import assert_one_line_error, run_kit

HEADER = "text_id,full_text,cohesion,syntax,vocabulary,phraseology,grammar,conventions\n"
GOOD = ("a,some essay text,3,3,3,3,3,3\nb,another essay,2,2.5,3,3.5,4,4.5\n"
        "c,third one,3,3,3,3,3,3\nd,fourth,3,3,3,3,3,3\n")


@pytest.mark.parametrize("name, content, fragments", [
    ("missing column", HEADER.replace(",grammar", "") + "a,t,3,3,3,3,3\n",
     ["train.csv", "missing column(s) 'grammar'"]),
    ("unknown target", HEADER.strip() + ",fluency\na,t,3,3,3,3,3,3,3\n", ["train.csv", "unknown column(s) 'fluency'"]),
    ("nan label", HEADER + GOOD + "e,t,3,3,,3,3,3\n", ["row 5 (text_id=e)", "'vocabulary'", "NaN"]),
    ("text label", HEADER + GOOD + "e,t,3,3,3,x,3,3\n", ["row 5 (text_id=e)", "'phraseology'", "not a number"]),
    ("out of range", HEADER + GOOD + "e,t,3,3,3,3,6,3\n", ["row 5 (text_id=e)", "'grammar'", "above the maximum"]),
    ("off step", HEADER + GOOD + "e,t,3,3,3,3,3,2.2\n", ["row 5 (text_id=e)", "'conventions'", "0.5 grid"]),
    ("duplicate id", HEADER + GOOD + "b,t,3,3,3,3,3,3\n", ["row 5", "'text_id'", "duplicate id 'b'"]),
    ("empty", "", ["train.csv", "file is empty"]),
])
def test_bad_train_csv(tmp_path, capsys, tiny_bert, name, content, fragments):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text(content, encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ell", "--data", data, "--model", tiny_bert, "--out", out)
    assert_one_line_error(code, err, *fragments)
    assert not out.exists()


def test_non_utf8_train_csv(tmp_path, capsys, tiny_bert):
    (tmp_path / "train.csv").write_bytes((HEADER + "a,na\xefve,3,3,3,3,3,3\n").encode("latin-1"))
    code, _, err = run_kit(capsys, "train", "ell", "--data", tmp_path, "--model", tiny_bert, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "train.csv", "not valid UTF-8", "line 2")
    assert not (tmp_path / "r").exists()


def test_model_folder_without_weights(tmp_path, capsys, ell_small_dir, tiny_bert):
    empty_model = tmp_path / "model"
    empty_model.mkdir()
    (empty_model / "config.json").write_bytes((tiny_bert / "config.json").read_bytes())
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", empty_model,
                           "--out", tmp_path / "r")
    assert_one_line_error(code, err, f"--model {empty_model}", "no weights")
    assert not (tmp_path / "r").exists()


def test_one_fold_is_rejected(tmp_path, capsys, ell_small_dir, tiny_bert):
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "1",
                           "--out", tmp_path / "r")
    assert_one_line_error(code, err, "--folds", "at least 2")
    assert not (tmp_path / "r").exists()


def test_missing_data_says_how_to_download(tmp_path, capsys, monkeypatch, tiny_bert):
    """USPPPM ships no sample: with no --data and no data/uspppm/ the error says how to get the data."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_kit(capsys, "train", "uspppm", "--model", tiny_bert)
    assert_one_line_error(code, err, "data/uspppm", "`kit data uspppm`", "xhlulu/cpc-codes")
    assert list(tmp_path.iterdir()) == []


def test_unknown_competition(capsys):
    code, _, err = run_kit(capsys, "train", "nope")
    assert_one_line_error(code, err, "unknown competition 'nope'", "ell")


def test_list_shows_ell(capsys):
    code, out, _ = run_kit(capsys, "list")
    assert code == 0 and "ell" in out and "MCRMSE" in out


def test_help_explains_options(capsys):
    code, out, _ = run_kit(capsys, "train", "--help")
    assert code == 0
    for option in ("--preset", "--resume", "--pooling", "--llrd", "--fgm-eps", "--eval-every", "--config"):
        assert option in out


def test_error_text_in_square_brackets_is_printed_as_is(tmp_path, capsys, tiny_bert):
    (tmp_path / "train.csv").write_text(HEADER + "a,t,3,3,3,3,3,[bold]\n", encoding="utf-8")
    code, _, err = run_kit(capsys, "train", "ell", "--data", tmp_path, "--model", tiny_bert, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "column 'conventions'", "'[bold]' is not a number")


def test_help_keeps_bracketed_defaults(capsys):
    code, out, _ = run_kit(capsys, "train", "--help")
    assert code == 0 and "[default:" in out and "data/<competition>/" in out
