"""What every command shares: OS faults and Ctrl-C end as one line, and nothing already written is lost."""

import errno
import json
import os

import pytest

from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e


def test_a_read_only_output_folder_is_one_line_and_the_old_file_survives(ell_tiny_run, ell_small_dir, tmp_path,
                                                                         capsys, monkeypatch):
    out = tmp_path / "submission.csv"
    out.write_text("the previous submission\n")

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_tiny_run, "--input", ell_small_dir / "test.csv",
                           "--output", out)
    assert_one_line_error(code, err, f"{tmp_path}: permission denied", "choose a folder you can write to")
    assert out.read_text() == "the previous submission\n"


def test_a_full_disk_mid_run_is_one_line_and_the_run_can_resume(ell_small_dir, tiny_bert, tmp_path, capsys,
                                                                 monkeypatch):
    from kaggle_kit.train import trainer

    out = tmp_path / "run"
    real_save = trainer.FoldTrainer._save_weights

    def disk_full_on_fold_1(self, fold, state):
        if fold == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.run.weights(fold)))
        return real_save(self, fold, state)

    monkeypatch.setattr(trainer.FoldTrainer, "_save_weights", disk_full_on_fold_1)
    args = ("train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2", "--epochs", "1",
            "--max-len", "32", "--out", out)
    code, _, err = run_kit(capsys, *args)
    assert_one_line_error(code, err, "fold1.safetensors: no space left on device", "--resume")
    assert (out / "fold0.safetensors").is_file() and not (out / "fold1.safetensors").exists()
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(trainer.FoldTrainer, "_save_weights", real_save)
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", out)
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_ctrl_c_prints_the_resume_line(ell_small_dir, tiny_bert, tmp_path, capsys, monkeypatch):
    from kaggle_kit.train import trainer

    out = tmp_path / "run"
    real_fit = trainer.FoldTrainer.fit

    def interrupted_in_fold_1(self, fold, train, valid, **kwargs):
        if fold == 1:
            raise KeyboardInterrupt
        return real_fit(self, fold, train, valid, **kwargs)

    monkeypatch.setattr(trainer.FoldTrainer, "fit", interrupted_in_fold_1)
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--epochs", "1", "--max-len", "32", "--out", out)
    assert code == 130
    assert f"continue with `kit train ell --resume --out {out}`" in err and "Traceback" not in err
    assert (out / "fold0.safetensors").is_file()


def test_ctrl_c_before_the_run_started_says_nothing_was_written(ell_small_dir, tiny_bert, tmp_path, capsys,
                                                                monkeypatch):
    from kaggle_kit.train import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "load_train", interrupted)
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert,
                           "--out", tmp_path / "run")
    assert code == 130 and "nothing was written" in err and not (tmp_path / "run").exists()


def test_usage_errors_keep_clicks_message_and_exit_code(capsys):
    code, _, err = run_kit(capsys, "train", "ell", "--no-such-option")
    assert code == 2 and "No such option" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_a_really_read_only_folder(tmp_path, ell_tiny_run, ell_small_dir, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_tiny_run, "--input", ell_small_dir / "test.csv",
                           "--output", locked / "s.csv")
    assert_one_line_error(code, err, "permission denied")
