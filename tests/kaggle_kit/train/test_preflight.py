"""Everything that can be known to fail is refused before the run folder exists: one line, exit 2, no folder."""

import pytest

from tests.helpers import assert_one_line_error, run_kit


def _train(capsys, tmp_path, data, model, *args):
    out = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ell", "--data", data, "--model", model, "--folds", "2", "--out", out,
                           *args)
    return code, err, out


@pytest.mark.parametrize("args, fragments", [
    (["--loss", "huber"], ["--loss 'huber' is unknown", "rmse"]),
    (["--input-format", "bogus"], ["--input-format 'bogus' is unknown for ell", "essay"]),
    (["--pooling", "weighted-layer", "--pooling-layers", "50"], ["--pooling-layers 50", "the model has 2 layers"]),
    (["--max-len", "1024", "--window-len", "600"], ["--window-len 600", "512 absolute positions"]),
    (["--max-len", "64", "--window-len", "16", "--window-stride", "20"], ["--window-stride 20", "above"]),
    (["--folds", "5000"], ["--folds 5000", "48 rows", "0 validation row(s)"]),
    (["--folds", "30"], ["--folds 30", "1 validation row(s)", "use --folds 24 or fewer"]),
    (["--precision", "fp16", "--device", "cpu"], ["--precision fp16", "needs a CUDA GPU"]),
    (["--mode", "frozen", "--pooling", "attention"], ["--pooling 'attention'", "--mode frozen"]),
    (["--device", "cuda:3"], ["--device cuda:3"]),
    (["--reinit-layers", "5"], ["--reinit-layers 5: the model has 2 layers"]),
    (["--reinit-layers", "1", "--freeze-layers", "2"], ["some would be re-initialised and frozen"]),
])
def test_refused_before_anything_is_written(tmp_path, capsys, ell_small_dir, tiny_bert, args, fragments):
    code, err, out = _train(capsys, tmp_path, ell_small_dir, tiny_bert, *args)
    assert_one_line_error(code, err, *fragments)
    assert not out.exists()


def test_a_refused_run_leaves_nothing_a_bare_resume_would_pick_up(tmp_path, capsys, ell_small_dir, tiny_bert,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--loss", "huber")
    assert code == 2 and not (tmp_path / "runs").exists(), err
    code, _, err = run_kit(capsys, "train", "ell", "--resume")
    assert_one_line_error(code, err, "--resume: no unfinished run under runs/ell/")


def test_out_must_be_new_or_empty(tmp_path, capsys, ell_small_dir, tiny_bert):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--out", busy)
    assert_one_line_error(code, err, f"--out {busy}: exists and is not an empty folder")
    assert (busy / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert,
                           "--out", a_file / "run")
    assert_one_line_error(code, err, f"{a_file} is a file, not a folder")


def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys, ell_small_dir, tiny_bert, monkeypatch):
    """Root can write anywhere, so the read-only folder is played by os.access (what the check asks)."""
    import os

    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert,
                           "--out", locked / "run")
    assert_one_line_error(code, err, f"{locked} is not writable")
    assert not (locked / "run").exists()


def test_few_validation_rows_are_said_loudly(tmp_path, capsys, ell_small_dir, tiny_bert):
    code, err, out = _train(capsys, tmp_path, ell_small_dir, tiny_bert, "--folds", "3", "--train-folds", "0",
                            "--epochs", "1", "--max-len", "16")
    assert code == 0, err
    assert "WARNING: only 16 validation rows in the smallest of 3 folds" in err
