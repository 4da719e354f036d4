"""`kit submit` against a recording fake of the kaggle package's KaggleApi: the calls, their order and arguments."""

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.registry import get_competition
from kaggle_kit.ship.kaggle_client import KaggleClient
from kaggle_kit.ship.submit import submit_bundle
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e
ELL_SLUG = "feedback-prize-english-language-learning"


class NotFound(Exception):
    def __init__(self):
        super().__init__("404 Client Error: Not Found")
        self.response = SimpleNamespace(status_code=404)


class FakeKaggleApi:
    """Records every call; answers like kaggle 2.2.4's KaggleApi (statuses as enum-like objects with .name)."""

    def __init__(self, dataset_exists=False, kernel_statuses=("RUNNING", "COMPLETE"), failure=""):
        self.calls = []
        self.dataset_exists = dataset_exists
        self.dataset_statuses = ["pending", "ready"]
        self.kernel_statuses = list(kernel_statuses)
        self.failure = failure

    def dataset_status(self, dataset):
        self.calls.append(("dataset_status", {"dataset": dataset}))
        if not self.dataset_exists:
            self.dataset_exists = True
            raise NotFound()
        return self.dataset_statuses.pop(0) if len(self.dataset_statuses) > 1 else self.dataset_statuses[0]

    def dataset_create_new(self, **kwargs):
        self.calls.append(("dataset_create_new", kwargs))
        return SimpleNamespace(error="", status="ok")

    def dataset_create_version(self, **kwargs):
        self.calls.append(("dataset_create_version", kwargs))
        return SimpleNamespace(error="", status="ok")

    def kernels_push(self, folder):
        self.calls.append(("kernels_push", {"folder": folder}))
        return SimpleNamespace(error="", version_number=7, ref="kit-tester/x", url="https://kaggle.com/x")

    def kernels_status(self, kernel):
        self.calls.append(("kernels_status", {"kernel": kernel}))
        status = self.kernel_statuses.pop(0) if len(self.kernel_statuses) > 1 else self.kernel_statuses[0]
        return SimpleNamespace(status=SimpleNamespace(name=status), failure_message=self.failure)

    def competition_submit_code(self, **kwargs):
        self.calls.append(("competition_submit_code", kwargs))
        return SimpleNamespace(message="Successfully submitted", ref=1)

    def competition_submissions(self, competition):
        self.calls.append(("competition_submissions", {"competition": competition}))
        return [SimpleNamespace(description="kit test", status=SimpleNamespace(name="PENDING"), public_score="")]


def submit(bundle, api, **kwargs):
    sleeps, lines = [], []
    status = submit_bundle(get_competition("ell"), bundle, KaggleClient(api), "kit test", poll_seconds=5,
                           sleep=sleeps.append, log=lines.append, **kwargs)
    return status, sleeps, lines


def test_new_dataset_then_kernel_run_then_code_submission(ell_tiny_bundle):
    api = FakeKaggleApi()
    status, sleeps, _ = submit(ell_tiny_bundle, api)
    names = [name for name, _ in api.calls]
    assert names == ["dataset_status", "dataset_create_new", "dataset_status", "dataset_status", "kernels_push",
                     "kernels_status", "kernels_status", "competition_submit_code", "competition_submissions"]
    calls = dict(api.calls)
    slug = ell_tiny_bundle.name
    assert calls["dataset_create_new"] == {"folder": str(ell_tiny_bundle / "dataset"), "public": False, "quiet": True,
                                           "convert_to_csv": False, "dir_mode": "zip"}
    assert calls["kernels_push"] == {"folder": str(ell_tiny_bundle / "notebook")}
    assert calls["kernels_status"] == {"kernel": f"kit-tester/{slug}-inference"}
    assert calls["competition_submit_code"] == {"file_name": "submission.csv", "message": "kit test",
                                                "competition": ELL_SLUG, "kernel": f"kit-tester/{slug}-inference",
                                                "kernel_version": 7, "quiet": True}
    assert sleeps == [5, 5] and "status pending" in status


def test_existing_dataset_gets_a_new_version(ell_tiny_bundle):
    api = FakeKaggleApi(dataset_exists=True)
    submit(ell_tiny_bundle, api)
    (version_call,) = [kw for name, kw in api.calls if name == "dataset_create_version"]
    assert version_call["dir_mode"] == "zip" and version_call["version_notes"] == "kit test"
    assert "dataset_create_new" not in [name for name, _ in api.calls]


def test_failed_kernel_run_is_not_submitted(ell_tiny_bundle):
    api = FakeKaggleApi(kernel_statuses=("RUNNING", "ERROR"), failure="CUDA out of memory")
    with pytest.raises(KitError, match="status 'error': CUDA out of memory"):
        submit(ell_tiny_bundle, api)
    assert "competition_submit_code" not in [name for name, _ in api.calls]


def test_no_network_is_one_clear_line(ell_tiny_bundle):
    class Offline(FakeKaggleApi):
        def dataset_status(self, dataset):
            raise ConnectionError("HTTPSConnectionPool(host='www.kaggle.com'): Max retries exceeded")

    with pytest.raises(KitError, match="cannot reach kaggle.com, check the network"):
        submit(ell_tiny_bundle, Offline())


def test_dry_run_validates_and_prints_every_call(ell_tiny_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))  # no credentials needed
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    code, _, err = run_kit(capsys, "submit", "ell", "--bundle", ell_tiny_bundle, "--dry-run", "--message", "try 1")
    assert code == 0, err
    for call in ("api.dataset_status(", "dir_mode='zip'", "api.kernels_push(", "api.kernels_status(",
                 f"api.competition_submit_code(file_name='submission.csv', message='try 1', competition='{ELL_SLUG}'"):
        assert call in err, call
    assert "metadata OK" in err


def test_dry_run_rejects_bad_metadata(ell_tiny_bundle, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(ell_tiny_bundle, bundle)
    meta_file = bundle / "notebook" / "kernel-metadata.json"
    meta = json.loads(meta_file.read_text())
    del meta["enable_internet"]
    meta_file.write_text(json.dumps(meta))
    code, _, err = run_kit(capsys, "submit", "ell", "--bundle", bundle, "--dry-run")
    assert_one_line_error(code, err, "kernel-metadata.json: enable_internet must be written as false")


def test_missing_credentials_are_one_line(ell_tiny_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run_kit(capsys, "submit", "ell", "--bundle", ell_tiny_bundle)
    assert_one_line_error(code, err, "no Kaggle credentials", "KAGGLE_USERNAME and KAGGLE_KEY")


def test_wrong_competition_is_refused(ell_tiny_bundle, capsys):
    code, _, err = run_kit(capsys, "submit", "uspppm", "--bundle", ell_tiny_bundle, "--dry-run")
    assert_one_line_error(code, err, "made for 'ell', not 'uspppm'")


def test_kaggle_is_imported_only_by_a_real_submit():
    """kaggle prints an auth notice on import: nothing but KaggleClient.from_credentials may import it."""
    code = ("import sys, kaggle_kit.cli, kaggle_kit.ship.submit, kaggle_kit.ship.kaggle_client, "
            "kaggle_kit.ship.bundle, kaggle_kit.ship.simulate; print('kaggle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
