"""`kit remote status|pull` against an autospec of the real KaggleApi: every kernel terminal state, each failure
as one line, the checks a pulled output must pass, and what a push sends (internet off, accelerator, image
pinned). The waits run on a fake clock."""

from __future__ import annotations

import shutil

import pytest
import requests
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus as KS

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json, sha256_file, write_json
from kaggle_kit.kaggle_api import PushResult
from kaggle_kit.remote import flow
from kaggle_kit.remote.flow import RECORD_FILE, check_remote_push, save_record, status_line
from kaggle_kit.remote.notebook import OUTPUT_LIST, TRAIN_LOG
from kaggle_kit.runs.folder import RunDir
from tests.helpers import assert_one_line_error, run_kit
from tests.kaggle_kit.remote.conftest import RemoteKaggle, client_of, waiter

KERNEL = "kit-tester/ell-kit-train-20261205-120000"
RUN_NAME = "20261205-120000-tiny-bert-remote"
KAGGLE_DATA = "/kaggle/input/competitions/feedback-prize-english-language-learning"


def a_record(**changes) -> dict:
    record = {"kernel": KERNEL, "competition": "ell", "run_name": RUN_NAME, "version": 3,
              "url": "https://www.kaggle.com/code/kit-tester/x", "accelerator": "t4x2",
              "machine_shape": "NvidiaTeslaT4", "image": {"pinning": "original", "list": "kaggle_image.txt",
                                                         "list_date": "2026-06-17", "python": "3.12"},
              "dataset": "kit-tester/ell-kit-remote-0123456789", "remote_id": "ell-remote-0123456789abcdef",
              "settings": {"folds": 2, "epochs": 1}, "model": {"path": "/m", "source": "copy"}, "resume": False,
              "pushed": "2026-12-05T12:00:00+00:00", "versions": [3]}
    return {**record, **changes}


def kernel_output(run, folder, remote_id="ell-remote-0123456789abcdef"):
    """What the training notebook leaves in /kaggle/working: run/ (trained on Kaggle's input folder) and the
    sha256 list of its files."""
    shutil.copytree(run, folder / "run", ignore=shutil.ignore_patterns("*.lock"))
    config = read_json(folder / "run" / "run_config.json")
    write_json(folder / "run" / "run_config.json", {**config, "data": KAGGLE_DATA})
    files = {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
             for p in sorted((folder / "run").rglob("*")) if p.is_file()}
    write_json(folder / OUTPUT_LIST, {"remote_id": remote_id, "run": "run", "train_exit_code": 0, "files": files,
                                      "python": "3.12.12", "torch": "2.10.0+cu128", "gpus": ["Tesla T4", "Tesla T4"],
                                      "session_seconds": 812.5, "image": {}})
    return folder


@pytest.fixture
def remote_dir(tmp_path, monkeypatch):
    """A push record under remote/, and `kit remote` talking to the fake given by `use`."""
    root = tmp_path / "remote"
    save_record(root, a_record())
    monkeypatch.chdir(tmp_path)
    return root


def use(monkeypatch, fake):
    from kaggle_kit.cli import remote as cli_remote

    monkeypatch.setattr(cli_remote, "_client", lambda dry_run: client_of(fake))
    monkeypatch.setattr(cli_remote, "_waiter", lambda poll, hours: waiter(hours * 3600))


def test_pull_of_a_complete_kernel_lands_the_run_marked_remote(remote_dir, ell_tiny_run, ell_small_dir, tmp_path,
                                                               capsys, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ell").symlink_to(ell_small_dir, target_is_directory=True)
    fake = RemoteKaggle(output=kernel_output(ell_tiny_run, tmp_path / "out"))
    use(monkeypatch, fake)
    code, _, err = run_kit(capsys, "remote", "pull", RUN_NAME, "--wait-hours", "1")
    assert code == 0, err
    dest = tmp_path / "runs" / "ell" / RUN_NAME
    assert f"pulled runs/ell/{RUN_NAME}: complete, folds 0,1" in err
    remote = read_json(dest / RECORD_FILE)
    assert remote["kernel"] == KERNEL and remote["version"] == 3 and remote["gpus"] == ["Tesla T4", "Tesla T4"]
    assert remote["image"]["pinning"] == "original" and remote["image"]["torch"] == "2.10.0+cu128"
    assert sha256_file(dest / "fold1.safetensors") == sha256_file(ell_tiny_run / "fold1.safetensors")
    # data/ell holds the same train.csv: the run points at it, so kit ensemble finds the labels here
    assert read_json(dest / "run_config.json")["data"] == str(ell_small_dir.resolve())
    assert remote["data_on_kaggle"] == KAGGLE_DATA
    code, _, err = run_kit(capsys, "ensemble", "ell", "--run", dest, "--run", ell_tiny_run, "--out",
                           tmp_path / "blend.json")
    assert code == 0, err
    assert [n for n in fake.names() if n == "kernels_status"] == ["kernels_status"] * 3  # queued, running, complete
    assert not (remote_dir / "ell" / "pulls" / f"{KERNEL.split('/')[1]}-v3").exists()  # the staging is gone


@pytest.mark.parametrize("status, failure, fragments", [
    (KS.ERROR, "Your notebook hit an unhandled error", ("error after", "Your notebook hit an unhandled error",
                                                        "the log ends: RuntimeError: CUDA out of memory")),
    (KS.CANCEL_ACKNOWLEDGED, "", ("cancel_acknowledged", "cancelled on kaggle.com", "no finished fold")),
    (KS.CANCEL_REQUESTED, "", ("cancel_requested", "cancelled on kaggle.com")),
    (KS.ERROR, "GPU quota exceeded for this week", ("quota exceeded", "resets weekly")),
])
def test_each_failed_state_is_one_line(remote_dir, tmp_path, capsys, monkeypatch, status, failure, fragments):
    log = "epoch 1\nfold 0: 40%\nRuntimeError: CUDA out of memory\n"
    fake = RemoteKaggle(kernel_statuses=(KS.RUNNING, status), failure=failure, log=log)
    use(monkeypatch, fake)
    code, _, err = run_kit(capsys, "remote", "pull", KERNEL, "--wait-hours", "1")
    assert_one_line_error(code, err, *fragments)
    if "log ends" in fragments[-1]:
        assert "  log: fold 0: 40%" in err  # the log's last lines, before the error line
    assert not (tmp_path / "runs").exists()


def died_in_fold_1(run, folder):
    """The output of a kernel whose kit train died in fold 1 (CUDA OOM): fold 0 finished, fold 1 half-written,
    the notebook's train log beside the run, all listed, and kit train's non-zero exit code."""
    shutil.copytree(run, folder / "run", ignore=shutil.ignore_patterns("*.lock", "fold1.*", "oof_fold1*"))
    manifest = read_json(folder / "run" / "manifest.json")
    write_json(folder / "run" / "manifest.json", {**manifest, "status": "running"})
    (folder / "run" / "fold1.safetensors").write_bytes(b"half a checkpoint")
    (folder / TRAIN_LOG).write_text("fold 0 done\nfold 1: 40%\ntorch.OutOfMemoryError: CUDA out of memory\n")
    files = {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file()}
    write_json(folder / OUTPUT_LIST, {"remote_id": "ell-remote-0123456789abcdef", "run": "run",
                                      "train_exit_code": 1, "files": files, "train_log": TRAIN_LOG})
    return folder


@pytest.mark.parametrize("status", [KS.ERROR, KS.CANCEL_ACKNOWLEDGED])
def test_a_failed_kernel_with_finished_folds_lands_as_a_partial_resumable_run(remote_dir, ell_tiny_run, tmp_path,
                                                                              capsys, monkeypatch, status):
    fake = RemoteKaggle(kernel_statuses=(KS.RUNNING, status), failure="Your notebook hit an unhandled error",
                        output=died_in_fold_1(ell_tiny_run, tmp_path / "out"))
    use(monkeypatch, fake)
    code, _, err = run_kit(capsys, "remote", "pull", RUN_NAME, "--wait-hours", "1")
    assert code == 0, err
    state = "error" if status == KS.ERROR else "cancelled"
    dest = tmp_path / "runs" / "ell" / RUN_NAME
    assert f"pulled runs/ell/{RUN_NAME}: PARTIAL, the kernel ended {state}; folds 0 finished" in err
    assert f"--resume {RUN_NAME}" in err
    assert "  log: torch.OutOfMemoryError: CUDA out of memory" in err  # the train log's end, from the output
    assert read_json(dest / RECORD_FILE)["kernel_state"] == state
    run = RunDir(dest)
    assert run.finished_folds() == [0] and not run.is_complete()
    assert sha256_file(dest / "fold0.safetensors") == sha256_file(ell_tiny_run / "fold0.safetensors")


def test_a_failed_kernel_with_a_damaged_finished_fold_is_one_line(remote_dir, ell_tiny_run, tmp_path, capsys,
                                                                 monkeypatch):
    output = died_in_fold_1(ell_tiny_run, tmp_path / "out")
    (output / "run" / "fold0.safetensors").write_bytes(b"damaged")
    use(monkeypatch, RemoteKaggle(kernel_statuses=(KS.ERROR,), output=output))
    code, _, err = run_kit(capsys, "remote", "pull", RUN_NAME, "--wait-hours", "1")
    assert_one_line_error(code, err, "error after", "the log ends: torch.OutOfMemoryError")
    assert not (tmp_path / "runs").exists()


def test_a_running_kernel_is_waited_for_only_as_long_as_asked(remote_dir, tmp_path, capsys, monkeypatch):
    use(monkeypatch, RemoteKaggle(kernel_statuses=(KS.RUNNING,)))
    code, _, err = run_kit(capsys, "remote", "pull", RUN_NAME)
    assert_one_line_error(code, err, "still 'running'", "--wait-hours")


def test_no_network_and_no_credentials_are_one_line(remote_dir, tmp_path, capsys, monkeypatch):
    fake = RemoteKaggle()
    fake.api.kernels_status.side_effect = requests.ConnectionError("Max retries exceeded with url")
    use(monkeypatch, fake)
    code, _, err = run_kit(capsys, "remote", "status")
    assert_one_line_error(code, err, "cannot reach kaggle.com")

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "home" / "kaggle"))
    code, _, err = run_kit(capsys, "remote", "status", RUN_NAME)
    assert_one_line_error(code, err, "no Kaggle credentials")


@pytest.mark.parametrize("status, failure, state", [
    (KS.COMPLETE, "", "complete; kit remote pull"), (KS.QUEUED, "", "running"), (KS.NEW_SCRIPT, "", "running"),
    (KS.ERROR, "boom", "error (boom)"), (KS.CANCEL_ACKNOWLEDGED, "", "cancelled"),
    (KS.ERROR, "Quota exceeded", "quota (Quota exceeded)"),
])
def test_status_names_every_state(status, failure, state):
    line = status_line(a_record(), client_of(RemoteKaggle(kernel_statuses=(status,), failure=failure)))
    assert f"{RUN_NAME}: {KERNEL} version 3 on t4x2: {state}" in line


def test_unknown_run_is_one_line(remote_dir, capsys):
    code, _, err = run_kit(capsys, "remote", "pull", "nope")
    assert_one_line_error(code, err, "no pushed run or kernel 'nope'", RUN_NAME)


@pytest.mark.parametrize("damage, fragment", [
    ("sha", "does not match its sha256"),
    ("settings", "run_config.json has epochs 1, but 3 was asked"),
    ("remote_id", "the output is of upload 'ell-remote-other'"),
    ("listing", f"the output has no {OUTPUT_LIST}"),
    ("stray", "are not in kit_remote_output.json"),
])
def test_a_pulled_output_is_checked_before_it_lands(ell_tiny_run, tmp_path, damage, fragment):
    output = kernel_output(ell_tiny_run, tmp_path / "out",
                           "ell-remote-other" if damage == "remote_id" else "ell-remote-0123456789abcdef")
    record = a_record(settings={"folds": 2, "epochs": 3 if damage == "settings" else 1})
    if damage == "sha":
        (output / "run" / "fold0.safetensors").write_bytes(b"damaged")
    elif damage == "listing":
        (output / OUTPUT_LIST).unlink()
    elif damage == "stray":
        (output / "run" / "extra.txt").write_text("not listed")
    with pytest.raises(KitError, match=fragment):
        flow.pull_run(record, client_of(RemoteKaggle(output=output)), waiter(), tmp_path / "remote", tmp_path / "runs",
                      log=lambda _: None)
    assert not (tmp_path / "runs" / "ell" / RUN_NAME).exists()


def test_pull_replaces_an_earlier_pull_of_the_same_run(ell_tiny_run, tmp_path):
    dest = tmp_path / "runs" / "ell" / RUN_NAME
    dest.mkdir(parents=True)
    (dest / "old.txt").write_text("earlier partial pull")
    output = kernel_output(ell_tiny_run, tmp_path / "out")
    flow.pull_run(a_record(), client_of(RemoteKaggle(output=output)), waiter(), tmp_path / "remote",
                  tmp_path / "runs", log=lambda _: None)
    assert not (dest / "old.txt").exists() and (dest / "fold0.safetensors").is_file()


@pytest.mark.parametrize("push, fragment", [
    (PushResult(version=0, error="Your accelerator quota has been exceeded"), "accelerator quota exceeded"),
    (PushResult(version=5, invalid_competition_sources=["feedback-prize-english-language-learning"]),
     "accept its rules at https://www.kaggle.com/competitions/feedback-prize-english-language-learning/rules .* "
     "run kit remote train again"),
    (PushResult(version=5, invalid_dataset_sources=["kit-tester/x-data"]), "did not attach the dataset"),
    (PushResult(version=5, invalid_model_sources=["google/gemma/transformers/2b/1"]), "did not attach the model"),
    (PushResult(version=0, error="Notebook title is taken"), "failed: Notebook title is taken"),
    (PushResult(version=0), "no version number"),
])
def test_a_refused_push_is_one_line(push, fragment):
    with pytest.raises(KitError, match=fragment) as err:
        check_remote_push(push, KERNEL, {}, log=lambda _: None)
    assert "\n" not in str(err.value)


def test_remote_train_pushes_offline_settings_and_reuses_the_upload(tmp_path, tiny_bert, image_packages_of_this_env,
                                                                    capsys, monkeypatch):
    """What the push sends (internet off, the accelerator's machine_shape, the image pinned, the upload and the
    competition attached), the record it leaves, and a second push of the same content reusing the upload."""
    monkeypatch.chdir(tmp_path)
    args = ["remote", "train", "ell", "--owner", "kit-tester", "--model", tiny_bert, "--folds", "2", "--epochs", "2",
            "--accelerator", "l4x1", "--image-packages", image_packages_of_this_env]
    fake = RemoteKaggle()
    use(monkeypatch, fake)
    code, _, err = run_kit(capsys, *args)
    assert code == 0, err
    assert [n for n in fake.names() if n.startswith(("dataset_create", "kernels_push"))] == [
        "dataset_create_new", "kernels_push"]
    (record_file,) = (tmp_path / "remote" / "ell" / "kernels").glob("*.json")
    record = read_json(record_file)
    meta = read_json(tmp_path / "remote" / "ell" / "notebooks" / record_file.stem / "kernel-metadata.json")
    assert meta["enable_internet"] is False and meta["machine_shape"] == "NvidiaL4X1" and meta["enable_gpu"]
    assert meta["docker_image_pinning_type"] == "original"
    assert meta["dataset_sources"] == [record["dataset"]]
    assert meta["competition_sources"] == ["feedback-prize-english-language-learning"]
    assert record["settings"] == {"folds": 2, "epochs": 2}
    assert f"pushed {record['kernel']} version 7 on l4x1" in err

    again = RemoteKaggle(dataset_exists=True)
    use(monkeypatch, again)
    code, _, err = run_kit(capsys, *args)
    assert code == 0, err
    assert "Kaggle has this content already; reusing it" in err
    assert "dataset_create_new" not in again.names() and "dataset_create_version" not in again.names()


def test_remote_train_refusals_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    use(monkeypatch, RemoteKaggle())
    code, _, err = run_kit(capsys, "remote", "train", "ell", "--owner", "kit-tester", "--accelerator", "p100")
    assert_one_line_error(code, err, "P100 is retired")
    code, _, err = run_kit(capsys, "remote", "train", "ell", "--resume", RUN_NAME, "--epochs", "3")
    assert_one_line_error(code, err, "--resume continues the pushed run with its own settings")
    code, _, err = run_kit(capsys, "remote", "train", "ell", "--owner", "kit-tester", "--resume", "nope")
    assert_one_line_error(code, err, "no pushed run or kernel 'nope'")
    assert not (tmp_path / "remote" / "ell" / "datasets").exists()


@pytest.mark.parametrize("competition, flags, fragment", [
    ("uspppm", [], "uspppm's cpc_titles.csv: a file from this machine"),
    ("ell", ["--pseudo", "pseudo.csv"], "--pseudo pseudo.csv: a file from this machine"),
    ("ell", ["--distill", "runs/ell/teacher"], "--distill runs/ell/teacher: a file from this machine"),
])
def test_files_the_upload_does_not_carry_are_refused_before_anything_is_pushed(tmp_path, capsys, monkeypatch,
                                                                               competition, flags, fragment):
    monkeypatch.chdir(tmp_path)
    fake = RemoteKaggle()
    use(monkeypatch, fake)
    code, _, err = run_kit(capsys, "remote", "train", competition, "--owner", "kit-tester", *flags)
    assert_one_line_error(code, err, fragment, "train this run locally")
    assert not (tmp_path / "remote").exists()
    assert not [n for n in fake.names() if n.startswith(("dataset", "kernels"))]
