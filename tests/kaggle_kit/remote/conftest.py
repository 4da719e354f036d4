"""A scripted Kaggle for `kit remote`: the submit tests' autospec of the real KaggleApi (every call binds to the
real signature), plus `kernels_output`, which serves a folder as a kernel's output and log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kaggle_kit.kaggle_api import KaggleClient
from kaggle_kit.ship.submit import Waiter
from tests.kaggle_kit.ship.test_submit import FakeClock, FakeKaggle

SETTINGS = ["--folds", "2", "--epochs", "1", "--max-len", "32", "--batch-size", "8", "--eval-batch-size", "16",
            "--precision", "fp32", "--threads", "1", "--seed", "7", "--device", "cpu"]


class RemoteKaggle(FakeKaggle):
    """`output` is the folder served as the kernel's output; `log` its log (Kaggle's JSON list of chunks)."""

    def __init__(self, output: Path | None = None, log: str = "", **kwargs):
        super().__init__(**kwargs)
        self.output, self.log = output, log
        self.api.kernels_output.side_effect = self.kernels_output

    def kernels_output(self, kernel, path, file_pattern=None, force=False, quiet=True, page_token=None,
                       page_size=20):
        files = []
        if self.output is not None:
            for source in sorted(p for p in Path(self.output).rglob("*") if p.is_file()):
                target = Path(path) / source.relative_to(self.output)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                files.append(str(target))
        if self.log:
            log_file = Path(path) / f"{kernel.split('/')[1]}.log"
            log_file.write_text(json.dumps([{"stream_name": "stdout", "time": 1.0, "data": self.log}]))
            files.append(str(log_file))
        return files, None


def waiter(wait_seconds: float = 3600.0) -> Waiter:
    clock = FakeClock()
    return Waiter(60.0, wait_seconds, clock.sleep, clock, log=lambda _: None)


def client_of(fake: RemoteKaggle) -> KaggleClient:
    return KaggleClient(fake.api)


@pytest.fixture
def no_downloads():
    def refuse(requirements, dest, image):
        raise AssertionError(f"tests must not download wheels ({requirements})")

    return refuse
