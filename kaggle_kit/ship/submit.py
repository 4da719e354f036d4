"""`kit submit`: bundle check -> dataset upload -> ready -> notebook push -> kernel run -> submission -> score.

Every wait ends: each status the kaggle client can report is sorted below into done, failed or waiting, by the
names of kagglesdk's enums (DatabundleVersionStatus, KernelWorkerStatus, SubmissionStatus; the client reports
them lowercased). A failed state stops at once with the reason; waiting is bounded, with a progress line that
says how long it has waited. The steps talk to Kaggle only through a client (kaggle_api.KaggleClient, or
DryRunClient for --dry-run), so the sequence is tested against an autospec of the real KaggleApi.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json, sha256_file
from kaggle_kit.kaggle_api import NOT_LISTED, KaggleCalls, PushResult, join_hint
from kaggle_kit.ship.bundle import load_bundle_manifest
from kaggle_kit.ship.kaggle_metadata import (
    DATASET_METADATA,
    KERNEL_METADATA,
    validate_dataset_metadata,
    validate_kernel_metadata,
)
from kaggle_kit.ship.kaggle_runtime import MANIFEST_NAME

# kagglesdk.datasets.types.dataset_enums.DatabundleVersionStatus
DATASET_DONE = ("ready",)
DATASET_FAILED = ("failed", "deleted")
DATASET_WAITING = ("not_yet_persisted", "blobs_received", "blobs_decompressed", "blobs_copied_to_sds",
                   "individual_blobs_compressed", "reprocessing")
# kagglesdk.kernels.types.kernels_enums.KernelWorkerStatus
KERNEL_DONE = ("complete",)
KERNEL_FAILED = ("error", "cancel_requested", "cancel_acknowledged")
KERNEL_WAITING = ("queued", "running", "new_script")
# kagglesdk.competitions.types.submission_status.SubmissionStatus (+ not yet listed by competition_submissions)
SUBMISSION_DONE = ("complete",)
SUBMISSION_FAILED = ("error",)
SUBMISSION_WAITING = ("pending", NOT_LISTED)
# Files of a bundle that manifest.json does not list: the manifest itself and the upload metadata.
UNLISTED_DATASET_FILES = (MANIFEST_NAME, DATASET_METADATA)
NOTEBOOK_FILES = ("inference.ipynb", KERNEL_METADATA)


def read_metadata(bundle_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both metadata files of a bundle, validated."""
    dataset_file = bundle_dir / "dataset" / DATASET_METADATA
    kernel_file = bundle_dir / "notebook" / KERNEL_METADATA
    for path in (dataset_file, kernel_file):
        if not path.is_file():
            raise KitError(f"--bundle {bundle_dir}: {path.relative_to(bundle_dir)} not found (run `kit bundle`)")
    try:
        dataset_meta, kernel_meta = read_json(dataset_file), read_json(kernel_file)
    except ValueError as err:
        raise KitError(f"--bundle {bundle_dir}: metadata is not valid JSON ({err})") from None
    validate_dataset_metadata(dataset_meta, str(dataset_file))
    validate_kernel_metadata(kernel_meta, kernel_file.parent, str(kernel_file))
    if dataset_meta["id"] not in kernel_meta["dataset_sources"]:
        raise KitError(f"{kernel_file}: dataset_sources does not include the bundle's dataset {dataset_meta['id']!r}")
    return dataset_meta, kernel_meta


def check_bundle_files(bundle_dir: Path, manifest: dict[str, Any]) -> int:
    """What is about to be uploaded is exactly what `kit bundle` recorded: every file of manifest.json with its size
    and sha256, nothing else in dataset/ or notebook/, and a notebook that looks for this bundle's id and installs
    its wheels. Returns the number of files checked."""
    dataset = bundle_dir / "dataset"
    if not manifest.get("bundle_id"):
        raise KitError(f"--bundle {bundle_dir}: manifest.json has no bundle_id (made by an older kit bundle); "
                       f"run `kit bundle` again")
    listed = manifest.get("files", {})
    for name, expected in sorted(listed.items()):
        path = dataset / name
        if not path.is_file():
            raise KitError(f"--bundle {bundle_dir}: dataset/{name} is listed in manifest.json but missing")
        size = path.stat().st_size
        if size != expected["size"]:
            raise KitError(f"--bundle {bundle_dir}: dataset/{name} is {size} bytes, manifest.json says "
                           f"{expected['size']}; run `kit bundle` again")
        if sha256_file(path) != expected["sha256"]:
            raise KitError(f"--bundle {bundle_dir}: dataset/{name} does not match its sha256 in manifest.json; "
                           f"run `kit bundle` again")
    stray = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*")
                   if p.is_file() and p.relative_to(dataset).as_posix() not in listed
                   and p.relative_to(dataset).as_posix() not in UNLISTED_DATASET_FILES)
    if stray:
        more = f" (+{len(stray) - 3} more)" if len(stray) > 3 else ""
        raise KitError(f"--bundle {bundle_dir}: dataset/ holds files manifest.json does not list: "
                       f"{', '.join(stray[:3])}{more}; they would be uploaded unchecked: remove them or run "
                       f"`kit bundle` again")
    notebook_dir = bundle_dir / "notebook"
    extra = sorted(p.relative_to(notebook_dir).as_posix() for p in notebook_dir.rglob("*")
                   if p.is_file() and p.relative_to(notebook_dir).as_posix() not in NOTEBOOK_FILES)
    if extra:
        raise KitError(f"--bundle {bundle_dir}: notebook/ holds files kit bundle did not write: {', '.join(extra)}")
    notebook = (notebook_dir / "inference.ipynb").read_text(encoding="utf-8")
    found = re.search(r"BUNDLE_ID = '([^'\\]+)'", notebook)
    if not found or found.group(1) != manifest["bundle_id"]:
        raise KitError(f"--bundle {bundle_dir}: notebook/inference.ipynb looks for bundle "
                       f"{found.group(1) if found else 'nothing'!r}, manifest.json is {manifest['bundle_id']!r}; "
                       f"run `kit bundle` again")
    for wheel in manifest.get("wheels", []):
        if f"{{DATASET_DIR}}/{wheel}" not in notebook:
            raise KitError(f"--bundle {bundle_dir}: notebook/inference.ipynb does not install {wheel}; "
                           f"run `kit bundle` again")
    return len(listed)


def elapsed_text(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@dataclass
class Waiter:
    """Polls a status until it is done (returns), failed (KitError at once) or the wait is over (KitError)."""

    poll_seconds: float
    wait_seconds: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = print
    progress_seconds: float = 300.0  # a progress line at least this often, and on every change

    def until(self, what: str, poll: Callable[[], str], done: tuple[str, ...], failed: tuple[str, ...],
              waiting: tuple[str, ...], failure_detail: Callable[[str], str] = lambda status: "") -> str:
        start = self.clock()
        last_status, last_line, warned = None, start, set()
        while True:
            status = poll()
            now = self.clock()
            elapsed = now - start
            if status in done:
                self.log(f"{what}: {status} after {elapsed_text(elapsed)}")
                return status
            if status in failed:
                raise KitError(f"{what}: {status} after {elapsed_text(elapsed)}{failure_detail(status)}")
            if status not in waiting and status not in warned:
                warned.add(status)
                self.log(f"{what}: status {status!r} is not one this kit knows; still waiting")
            if elapsed >= self.wait_seconds:
                raise KitError(f"{what}: still {status!r} after {elapsed_text(elapsed)} (--wait-hours "
                               f"{self.wait_seconds / 3600:g}); nothing failed yet: check it on kaggle.com, or wait "
                               f"longer with a larger --wait-hours")
            if status != last_status or now - last_line >= self.progress_seconds:
                self.log(f"{what}: {status}, {elapsed_text(elapsed)} elapsed (gives up after "
                         f"{elapsed_text(self.wait_seconds)})")
                last_status, last_line = status, now
            self.sleep(min(self.poll_seconds, max(self.wait_seconds - elapsed, 0.0)))


def check_push(push: PushResult, kernel_id: str, kernel_meta: dict[str, Any], log: Callable[[str], None]) -> None:
    """Kaggle answers a push whose sources it could not attach with lists of them, not with an error; the
    notebook would then run without its inputs. Each becomes one error with the fix."""
    if push.error:
        raise KitError(f"kernels_push {kernel_id} failed: {push.error}")
    problems = []
    for competition in push.invalid_competition_sources:
        problems.append(f"Kaggle did not attach the competition {competition!r}: {join_hint(competition)}")
    for dataset in push.invalid_dataset_sources:
        problems.append(f"Kaggle did not attach the dataset {dataset!r}: check that it exists and finished "
                        f"processing (kaggle datasets status {dataset}) and that the account of your API token owns "
                        f"it or it is public; a private dataset of another account cannot be attached")
    for kernel in push.invalid_kernel_sources:
        problems.append(f"Kaggle did not attach the notebook {kernel!r}: make it visible to your account")
    for model in push.invalid_model_sources:
        problems.append(f"Kaggle did not attach the model {model!r}: check its handle and that you accepted its "
                        f"terms on kaggle.com")
    if problems:
        raise KitError(f"kernels_push {kernel_id}: {problems[0]}" + (f" (and {len(problems) - 1} more: "
                                                                       f"{'; '.join(problems[1:])})"
                                                                       if len(problems) > 1 else ""))
    if push.invalid_tags:
        log(f"warning: Kaggle ignored the notebook tags {', '.join(push.invalid_tags)}")
    if push.version <= 0:
        raise KitError(f"kernels_push {kernel_id}: Kaggle returned no version number; see the notebook on kaggle.com")


def submit_bundle(comp: Competition, bundle_dir: Path, client: KaggleCalls, message: str, poll_seconds: float = 30.0,
                  wait_seconds: float = 10 * 3600, sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = print,
                  wait_for_score: bool = True) -> str:
    """Run every step of a code-competition submission; return the submission's final status line."""
    bundle_dir = Path(bundle_dir)
    manifest = load_bundle_manifest(bundle_dir)
    if manifest["competition"] != comp.name:
        raise KitError(f"--bundle {bundle_dir}: made for {manifest['competition']!r}, not {comp.name!r}")
    dataset_meta, kernel_meta = read_metadata(bundle_dir)
    if comp.kaggle_slug not in kernel_meta["competition_sources"]:
        raise KitError(f"{bundle_dir / 'notebook' / KERNEL_METADATA}: competition_sources lacks {comp.kaggle_slug!r}")
    checked = check_bundle_files(bundle_dir, manifest)
    dataset_id, kernel_id = dataset_meta["id"], kernel_meta["id"]
    dataset_dir, notebook_dir = bundle_dir / "dataset", bundle_dir / "notebook"
    log(f"bundle check: all {checked} files match manifest.json (size and sha256), no stray files; "
        f"bundle id {manifest['bundle_id']}")
    shape = kernel_meta.get("machine_shape") or "CPU"
    log(f"metadata OK: dataset {dataset_id}, notebook {kernel_id} on {shape}, competition {comp.kaggle_slug}")
    waiter = Waiter(poll_seconds, wait_seconds, sleep, clock, log)
    if client.dataset_exists(dataset_id):
        before = client.dataset_status(dataset_id).version
        log(f"uploading a new version of {dataset_id} (now at version {before})")
        client.dataset_create_version(dataset_dir, message)
    else:
        before = 0
        log(f"creating the private dataset {dataset_id}")
        client.dataset_create_new(dataset_dir)

    def dataset_status() -> str:
        state = client.dataset_status(dataset_id)
        # `ready` of the version before the upload is not this upload being ready
        return "waiting_for_new_version" if state.status == "ready" and state.version <= before else state.status

    waiter.until(f"dataset {dataset_id}", dataset_status, DATASET_DONE, DATASET_FAILED,
                 DATASET_WAITING + ("waiting_for_new_version",),
                 lambda status: f"; Kaggle could not process the upload: see kaggle.com/datasets/{dataset_id}, fix "
                                f"it and run kit submit again")
    push = client.kernels_push(notebook_dir)
    check_push(push, kernel_id, kernel_meta, log)
    log(f"pushed notebook {kernel_id} version {push.version}; waiting for its run {push.url}".rstrip())
    last_failure = ""

    def kernel_status() -> str:
        nonlocal last_failure
        status, last_failure = client.kernels_status(kernel_id)
        return status

    waiter.until(f"notebook {kernel_id}", kernel_status, KERNEL_DONE, KERNEL_FAILED, KERNEL_WAITING,
                 lambda status: (f": {last_failure}" if last_failure else "")
                 + "; nothing was submitted; see the notebook's log on kaggle.com")
    ref, answer = client.competition_submit(comp.kaggle_slug, kernel_id, push.version, message)
    if ref <= 0:
        raise KitError(f"competition_submit_code {kernel_id} version {push.version} to {comp.kaggle_slug}: Kaggle "
                       f"returned no submission ({answer or 'no message'})")
    log(f"submitted {kernel_id} version {push.version} to {comp.kaggle_slug}: {answer or 'ok'} (submission {ref})")
    if not wait_for_score:
        return f"submission {ref}: pending (not waited for: --no-wait-for-score)"
    detail = ""

    def submission_status() -> str:
        nonlocal detail
        status, detail = client.submission_status(comp.kaggle_slug, ref)
        return status

    status = waiter.until(f"submission {ref}", submission_status, SUBMISSION_DONE, SUBMISSION_FAILED,
                          SUBMISSION_WAITING,
                          lambda status: f": {detail or 'no error description'}; the notebook ran but Kaggle's "
                                         f"rerun on the hidden test set failed (time, memory, or a different "
                                         f"submission.csv): see the submission on kaggle.com")
    result = f"submission {ref}: {status}" + (f", {detail}" if detail else "")
    log(result)
    return result
