"""`kit submit` against an autospec of the installed kaggle client's KaggleApi: every call binds to the real
signature, every answer is one of kagglesdk's own response types, and every status is a real enum member.
The waits run on a fake clock, so even a 10-hour wait ends in milliseconds."""

import contextlib
import inspect
import io
import json
import shutil
import subprocess
import sys
from unittest.mock import create_autospec

import pytest
import requests
from kagglesdk.competitions.types.competition_api_service import ApiCreateCodeSubmissionResponse, ApiSubmission
from kagglesdk.competitions.types.submission_status import SubmissionStatus
from kagglesdk.datasets.types.dataset_api_service import ApiCreateDatasetResponse
from kagglesdk.datasets.types.dataset_enums import DatabundleVersionStatus
from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusResponse, ApiSaveKernelResponse
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

from kaggle_kit.errors import KitError
from kaggle_kit.kaggle_api import KaggleClient
from kaggle_kit.registry import get_competition
from kaggle_kit.ship import submit as submit_module
from kaggle_kit.ship.submit import submit_bundle
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e
ELL_SLUG = "feedback-prize-english-language-learning"
DS = DatabundleVersionStatus
KS = KernelWorkerStatus
SS = SubmissionStatus


def kaggle_api_class():
    with contextlib.redirect_stdout(io.StringIO()):  # kaggle prints an authentication notice on import
        from kaggle.api.kaggle_api_extended import KaggleApi
    return KaggleApi


def http_error(code: int, text: str) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = code
    return requests.HTTPError(f"{code} Client Error: {text}", response=response)


class FakeKaggle:
    """Kaggle as the installed client answers it, scripted: statuses are kagglesdk enum members, responses are
    kagglesdk objects, and `api` is create_autospec(KaggleApi), so a call that does not bind raises TypeError."""

    def __init__(self, dataset_exists=False, version_before=3, dataset_statuses=(DS.BLOBS_RECEIVED, DS.READY),
                 kernel_statuses=(KS.QUEUED, KS.RUNNING, KS.COMPLETE), failure="",
                 submission_statuses=(SS.PENDING, SS.COMPLETE), error_description="", score="0.4512", push=None,
                 submission_ref=4242):
        self.api = create_autospec(kaggle_api_class(), instance=True)
        self.exists = dataset_exists
        self.version = version_before if dataset_exists else 0
        self.uploaded = False
        self.dataset_statuses = list(dataset_statuses)
        self.kernel_statuses = list(kernel_statuses)
        self.failure = failure
        self.submission_statuses = list(submission_statuses)
        self.error_description, self.score, self.submission_ref = error_description, score, submission_ref
        self.push = push or self.save_response(version_number=7, url="https://www.kaggle.com/code/kit-tester/x")
        self.api.dataset_status.side_effect = self.dataset_status
        self.api.dataset_create_new.side_effect = self.upload
        self.api.dataset_create_version.side_effect = self.upload
        self.api.kernels_push.side_effect = lambda folder, timeout=None, acc=None: self.push
        self.api.kernels_status.side_effect = self.kernels_status
        self.api.competition_submit_code.side_effect = self.submit_code
        self.api.competition_submissions.side_effect = self.submissions

    @staticmethod
    def save_response(**fields):
        response = ApiSaveKernelResponse()
        for key, value in fields.items():
            setattr(response, key, value)
        return response

    @staticmethod
    def next_of(queue):
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def dataset_status(self, dataset, format=None):
        if not self.exists:
            raise http_error(404, "Not Found")
        status = DS.READY if not self.uploaded else self.next_of(self.dataset_statuses)
        version = self.version + 1 if self.uploaded else self.version  # the upload's version, while it processes
        if format is None:
            return status.name.lower()  # what the real client does with the enum
        return json.dumps({"status": status.name.lower(), "current_version_number": version})

    def upload(self, folder, *args, **kwargs):
        self.exists, self.uploaded = True, True
        response = ApiCreateDatasetResponse()
        response.status, response.ref = "ok", "kit-tester/x"
        return response

    def kernels_status(self, kernel):
        response = ApiGetKernelSessionStatusResponse()
        response.status = self.next_of(self.kernel_statuses)
        response.failure_message = self.failure
        return response

    def submit_code(self, file_name, message, competition=None, kernel=None, kernel_version=None, quiet=False):
        response = ApiCreateCodeSubmissionResponse()
        response.message, response.ref = "Your submission was successfully saved", self.submission_ref
        return response

    def submissions(self, competition, *args, **kwargs):
        status = self.next_of(self.submission_statuses)
        ours, older = ApiSubmission(), ApiSubmission()
        ours.ref, ours.status, ours.description = self.submission_ref, status, "kit test"
        ours.error_description = self.error_description if status is SS.ERROR else ""
        ours.public_score = self.score if status is SS.COMPLETE else ""
        older.ref, older.status, older.public_score = 1, SS.COMPLETE, "0.9999"
        return [older, ours]

    def calls(self):
        """(name, kwargs bound to the real signature) for every call made, in order."""
        real = kaggle_api_class()
        bound = []
        for call in self.api.mock_calls:
            name = call[0]
            signature = inspect.signature(getattr(real, name))
            arguments = signature.bind(None, *call.args, **call.kwargs).arguments  # None stands in for self
            arguments.pop("self")
            bound.append((name, dict(arguments)))
        return bound

    def names(self):
        return [name for name, _ in self.calls()]


class FakeClock:
    """time.monotonic and time.sleep in one: sleeping moves the clock."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def submit(bundle, kaggle, wait_hours=10.0, **kwargs):
    clock, lines = FakeClock(), []
    status = submit_bundle(get_competition("ell"), bundle, KaggleClient(kaggle.api), "kit test", poll_seconds=30,
                           wait_seconds=wait_hours * 3600, sleep=clock.sleep, clock=clock, log=lines.append, **kwargs)
    return status, clock, lines


def test_new_dataset_then_kernel_run_then_code_submission_then_score(ell_tiny_bundle):
    kaggle = FakeKaggle()
    status, clock, lines = submit(ell_tiny_bundle, kaggle)
    assert kaggle.names() == ["dataset_status", "dataset_create_new", "dataset_status", "dataset_status",
                              "kernels_push", "kernels_status", "kernels_status", "kernels_status",
                              "competition_submit_code", "competition_submissions", "competition_submissions"]
    calls = dict(kaggle.calls())
    slug = ell_tiny_bundle.name
    assert calls["dataset_create_new"] == {"folder": str(ell_tiny_bundle / "dataset"), "public": False, "quiet": True,
                                           "convert_to_csv": False, "dir_mode": "zip"}
    assert calls["kernels_push"] == {"folder": str(ell_tiny_bundle / "notebook")}
    assert calls["kernels_status"] == {"kernel": f"kit-tester/{slug}-inference"}
    assert calls["competition_submit_code"] == {"file_name": "submission.csv", "message": "kit test",
                                                "competition": ELL_SLUG, "kernel": f"kit-tester/{slug}-inference",
                                                "kernel_version": 7, "quiet": True}
    assert calls["competition_submissions"] == {"competition": ELL_SLUG}
    assert status == "submission 4242: complete, public score 0.4512"  # ours, not the older submission listed first
    assert clock.sleeps == [30] * 4
    assert any(line.startswith("bundle check: all ") and "no stray files" in line for line in lines)
    assert "notebook kit-tester/" in "\n".join(lines) and "on NvidiaTeslaT4" in lines[1]


def test_existing_dataset_waits_for_the_new_version_not_the_old_ready(ell_tiny_bundle):
    """Right after an upload the status can still be the previous version's `ready`."""
    kaggle = FakeKaggle(dataset_exists=True, version_before=3, dataset_statuses=(DS.READY, DS.READY))
    answers = iter([json.dumps({"status": "ready", "current_version_number": 3}),  # before the upload
                    json.dumps({"status": "ready", "current_version_number": 3}),  # stale: still the old version
                    json.dumps({"status": "blobs_received", "current_version_number": 4}),
                    json.dumps({"status": "ready", "current_version_number": 4})])
    kaggle.api.dataset_status.side_effect = lambda dataset, format=None: "ready" if format is None else next(answers)
    _, _, lines = submit(ell_tiny_bundle, kaggle)
    (version_call,) = [kw for name, kw in kaggle.calls() if name == "dataset_create_version"]
    assert version_call == {"folder": str(ell_tiny_bundle / "dataset"), "version_notes": "kit test", "quiet": True,
                            "convert_to_csv": False, "delete_old_versions": False, "dir_mode": "zip"}
    assert "dataset_create_new" not in kaggle.names()
    assert kaggle.names().count("dataset_status") == 5  # exists?, version before, stale ready, processing, ready
    assert any("waiting_for_new_version" in line for line in lines)


def test_every_status_of_the_real_enums_is_sorted_into_done_failed_or_waiting():
    from kaggle_kit.kaggle_api import NOT_LISTED

    for enum, done, failed, waiting in (
            (DS, submit_module.DATASET_DONE, submit_module.DATASET_FAILED, submit_module.DATASET_WAITING),
            (KS, submit_module.KERNEL_DONE, submit_module.KERNEL_FAILED, submit_module.KERNEL_WAITING),
            (SS, submit_module.SUBMISSION_DONE, submit_module.SUBMISSION_FAILED,
             tuple(s for s in submit_module.SUBMISSION_WAITING if s != NOT_LISTED))):
        names = [member.name.lower() for member in enum]
        assert sorted(done + failed + waiting) == sorted(names), enum.__name__


@pytest.mark.parametrize("status", list(DS), ids=lambda s: s.name)
def test_each_dataset_status(ell_tiny_bundle, status):
    kaggle = FakeKaggle(dataset_statuses=(status, DS.READY))
    if status in (DS.FAILED, DS.DELETED):
        with pytest.raises(KitError, match=rf"dataset kit-tester/.*: {status.name.lower()} after 0 s; Kaggle could "
                                           r"not process the upload"):
            submit(ell_tiny_bundle, kaggle)
        assert "kernels_push" not in kaggle.names()
    else:
        submit(ell_tiny_bundle, kaggle)
        assert "kernels_push" in kaggle.names()


@pytest.mark.parametrize("status", list(KS), ids=lambda s: s.name)
def test_each_kernel_status(ell_tiny_bundle, status):
    kaggle = FakeKaggle(kernel_statuses=(KS.QUEUED, status, KS.COMPLETE), failure="CUDA out of memory")
    if status in (KS.ERROR, KS.CANCEL_REQUESTED, KS.CANCEL_ACKNOWLEDGED):
        with pytest.raises(KitError, match=rf"notebook .*: {status.name.lower()} after 30 s: CUDA out of memory; "
                                           r"nothing was submitted"):
            submit(ell_tiny_bundle, kaggle)
        assert "competition_submit_code" not in kaggle.names()
    else:
        submit(ell_tiny_bundle, kaggle)
        assert "competition_submit_code" in kaggle.names()


@pytest.mark.parametrize("status", list(SS), ids=lambda s: s.name)
def test_each_submission_status(ell_tiny_bundle, status):
    kaggle = FakeKaggle(submission_statuses=(status, SS.COMPLETE), error_description="Notebook Timeout")
    if status is SS.ERROR:
        with pytest.raises(KitError, match=r"submission 4242: error after 0 s: Notebook Timeout; the notebook ran but "
                                           r"Kaggle's rerun on the hidden test set failed"):
            submit(ell_tiny_bundle, kaggle)
    else:
        result, _, _ = submit(ell_tiny_bundle, kaggle)
        assert result == "submission 4242: complete, public score 0.4512"


def test_a_run_that_never_ends_gives_up_with_progress_lines(ell_tiny_bundle):
    kaggle = FakeKaggle(kernel_statuses=(KS.RUNNING,))
    with pytest.raises(KitError, match=r"notebook .*: still 'running' after 2 h 00 min \(--wait-hours 2\); nothing "
                                       r"failed yet"):
        submit(ell_tiny_bundle, kaggle, wait_hours=2)
    polls = kaggle.names().count("kernels_status")
    assert polls == 2 * 3600 / 30 + 1  # bounded: one poll per 30 s for 2 h, then it stops
    assert "competition_submit_code" not in kaggle.names()


def test_progress_lines_say_the_elapsed_time(ell_tiny_bundle):
    kaggle = FakeKaggle(kernel_statuses=[KS.QUEUED] * 3 + [KS.RUNNING] * 40 + [KS.COMPLETE])
    _, _, lines = submit(ell_tiny_bundle, kaggle)
    progress = [line for line in lines if line.startswith("notebook ") and "elapsed" in line]
    assert progress[0].endswith(": queued, 0 s elapsed (gives up after 10 h 00 min)")
    assert progress[1].endswith(": running, 1 min 30 s elapsed (gives up after 10 h 00 min)")
    assert progress[2].endswith(": running, 6 min 30 s elapsed (gives up after 10 h 00 min)")  # every 5 min
    assert len(progress) == 5  # 0 s, 1:30, 6:30, 11:30, 16:30: not one line per 30 s poll
    assert any(line.endswith("-inference: complete after 21 min 30 s") for line in lines)


def test_unknown_status_is_reported_and_waited_on(ell_tiny_bundle):
    kaggle = FakeKaggle()
    answers = iter([json.dumps({"status": "brand_new_state", "current_version_number": 1}),
                    json.dumps({"status": "ready", "current_version_number": 1})])

    def dataset_status(dataset, format=None):
        if format is None:
            raise http_error(404, "Not Found")
        return next(answers)

    kaggle.api.dataset_status.side_effect = dataset_status
    _, _, lines = submit(ell_tiny_bundle, kaggle)
    assert any("status 'brand_new_state' is not one this kit knows; still waiting" in line for line in lines)


@pytest.mark.parametrize("fields, message", [
    ({"invalid_competition_sources": [ELL_SLUG]},
     f"Kaggle did not attach the competition '{ELL_SLUG}': join the competition and accept its rules at "
     f"https://www.kaggle.com/competitions/{ELL_SLUG}/rules"),
    ({"invalid_dataset_sources": ["kit-tester/x"]},
     "Kaggle did not attach the dataset 'kit-tester/x': check that it exists and finished processing"),
    ({"invalid_model_sources": ["google/gemma/pytorch/2b/1"]}, "did not attach the model"),
    ({"invalid_kernel_sources": ["someone/nb"]}, "did not attach the notebook 'someone/nb'"),
    ({"error": "Notebook exceeds the size limit"}, "failed: Notebook exceeds the size limit"),
    ({}, "Kaggle returned no version number"),
])
def test_push_problems_fail_loudly_with_the_fix(ell_tiny_bundle, fields, message):
    kaggle = FakeKaggle(push=FakeKaggle.save_response(**fields, **({"version_number": 7} if fields else {})))
    with pytest.raises(KitError) as err:
        submit(ell_tiny_bundle, kaggle)
    assert message in str(err.value)
    assert "kernels_status" not in kaggle.names()


def test_rules_not_accepted_at_submit_says_how(ell_tiny_bundle):
    kaggle = FakeKaggle()
    kaggle.api.competition_submit_code.side_effect = http_error(403, "Forbidden")
    with pytest.raises(KitError, match=r"competition_submit_code failed: 403 Client Error: Forbidden; join the "
                                       r"competition and accept its rules"):
        submit(ell_tiny_bundle, kaggle)


def test_failed_dataset_upload_answer_is_an_error(ell_tiny_bundle):
    kaggle = FakeKaggle()

    def refused(folder, *args, **kwargs):
        response = ApiCreateDatasetResponse()
        response.status, response.error = "error", 'The requested title "x" is already in use by a dataset.'
        return response

    kaggle.api.dataset_create_new.side_effect = refused
    with pytest.raises(KitError, match="dataset_create_new failed: The requested title"):
        submit(ell_tiny_bundle, kaggle)


def test_no_network_is_one_clear_line(ell_tiny_bundle):
    kaggle = FakeKaggle()
    kaggle.api.dataset_status.side_effect = requests.ConnectionError(
        "HTTPSConnectionPool(host='www.kaggle.com'): Max retries exceeded")
    with pytest.raises(KitError, match="cannot reach kaggle.com, check the network"):
        submit(ell_tiny_bundle, kaggle)


@pytest.fixture
def bundle_copy(ell_tiny_bundle, tmp_path):
    copy = tmp_path / ell_tiny_bundle.name
    shutil.copytree(ell_tiny_bundle, copy)
    return copy


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, message", [
    (lambda b: flip_last_byte(b / "dataset/models/ell-tiny/fold1.safetensors"),
     "dataset/models/ell-tiny/fold1.safetensors does not match its sha256 in manifest.json"),
    (lambda b: (b / "dataset/models/ell-tiny/cv.json").write_text("{}"),
     "dataset/models/ell-tiny/cv.json is 2 bytes, manifest.json says"),
    (lambda b: (b / "dataset/models/ell-tiny/tokenizer/tokenizer.json").unlink(),
     "dataset/models/ell-tiny/tokenizer/tokenizer.json is listed in manifest.json but missing"),
    (lambda b: (b / "dataset/models/ell-tiny/notes.txt").write_text("mine"),
     "dataset/ holds files manifest.json does not list: models/ell-tiny/notes.txt"),
    (lambda b: (b / "notebook/old.ipynb").write_text("{}"),
     "notebook/ holds files kit bundle did not write: old.ipynb"),
    (lambda b: (b / "notebook/inference.ipynb").write_text(
        (b / "notebook/inference.ipynb").read_text().replace("BUNDLE_ID = 'ell-", "BUNDLE_ID = 'ell-0")),
     "notebook/inference.ipynb looks for bundle"),
])
def test_the_bundle_is_checked_against_its_manifest_before_any_upload(bundle_copy, capsys, damage, message):
    damage(bundle_copy)
    kaggle = FakeKaggle()
    with pytest.raises(KitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        submit(bundle_copy, kaggle)
    assert kaggle.api.mock_calls == []  # nothing was sent
    code, _, err = run_kit(capsys, "submit", "ell", "--bundle", bundle_copy, "--dry-run")
    assert_one_line_error(code, err, message)


def test_dry_run_checks_the_bundle_and_prints_every_call(ell_tiny_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))  # no credentials needed
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    code, _, err = run_kit(capsys, "submit", "ell", "--bundle", ell_tiny_bundle, "--dry-run", "--message", "try 1")
    assert code == 0, err
    for call in ("api.dataset_status(", "dir_mode='zip'", "api.kernels_push(", "api.kernels_status(",
                 f"api.competition_submit_code(file_name='submission.csv', message='try 1', competition='{ELL_SLUG}'",
                 "api.competition_submissions("):
        assert call in err, call
    assert "(dry run) bundle check: all " in err and "metadata OK" in err


def test_dry_run_calls_bind_to_the_real_signatures(ell_tiny_bundle):
    """DryRunClient prints the same calls KaggleClient makes: replay the real client against the autospec."""
    kaggle = FakeKaggle()
    submit(ell_tiny_bundle, kaggle)
    assert kaggle.calls()  # every call bound (calls() raises TypeError otherwise)


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
    code = ("import sys, kaggle_kit.cli, kaggle_kit.ship.submit, kaggle_kit.kaggle_api, "
            "kaggle_kit.ship.bundle, kaggle_kit.ship.simulate; print('kaggle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
