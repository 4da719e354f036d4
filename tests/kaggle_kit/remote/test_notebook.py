"""The training notebook's train and listing cells when kit train fails: the run folder and the train log are
still listed (so `kit remote pull` can land the finished folds), and the kernel still ends in error."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from kaggle_kit.remote import notebook


class DiesInFold1:
    """A `kit train` that finishes fold 0, prints, and exits 1 (a CUDA OOM in fold 1)."""

    def __init__(self, command, **kwargs):
        run_dir = command[command.index("--out") + 1]
        (Path(run_dir) / "folds").mkdir(parents=True)
        (Path(run_dir) / "fold0.safetensors").write_bytes(b"weights")
        self.stdout = io.StringIO("fold 0 done\ntorch.OutOfMemoryError: CUDA out of memory\n")

    def wait(self):
        return 1


def test_a_failed_kit_train_still_leaves_the_run_and_its_log_listed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(subprocess, "Popen", DiesInFold1)
    namespace = {"WORKING_DIR": str(tmp_path), "COMPETITION": "ell", "COMPETITION_DIR": "/c", "RESUME": False,
                 "SETTINGS": {}, "MODEL_DIR": "/m", "SESSION_HOURS": 12.0, "MARGIN_HOURS": 0.5, "REMOTE_ID": "r",
                 "RUN_FOLDER": notebook.RUN_FOLDER, "TRAIN_LOG": notebook.TRAIN_LOG,
                 "OUTPUT_LIST": notebook.OUTPUT_LIST, "time": __import__("time"), "STARTED_AT": 0.0}
    exec(notebook.TRAIN_SOURCE, namespace)  # noqa: S102 - the cell's own source, as Kaggle runs it
    with pytest.raises(RuntimeError, match="kit train failed .exit code 1.*kept for kit remote pull"):
        exec(notebook.LIST_SOURCE, namespace)  # noqa: S102
    output = json.loads((tmp_path / notebook.OUTPUT_LIST).read_text())
    assert output["train_exit_code"] == 1
    assert set(output["files"]) == {"run/fold0.safetensors", notebook.TRAIN_LOG}
    assert "CUDA out of memory" in (tmp_path / notebook.TRAIN_LOG).read_text()
