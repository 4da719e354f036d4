"""`kit submit`: dataset upload -> ready -> notebook push -> kernel run -> code-competition submission.

The steps talk to Kaggle only through a client (kaggle_client.KaggleClient, or DryRunClient for --dry-run),
so the whole sequence is tested with a recording fake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.ship.bundle import (
    DATASET_METADATA,
    KERNEL_METADATA,
    load_bundle_manifest,
    validate_dataset_metadata,
    validate_kernel_metadata,
)

KERNEL_FAILED = ("error", "cancel_requested", "cancel_acknowledged")


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


def wait_for(what: str, poll: Callable[[], str], done: tuple[str, ...], failed: tuple[str, ...],
             poll_seconds: float, wait_seconds: float, sleep: Callable[[float], None],
             log: Callable[[str], None]) -> None:
    waited = 0.0
    while True:
        status = poll()
        if status in done:
            log(f"{what}: {status}")
            return
        if status in failed:
            raise KitError(f"{what}: status {status!r}")
        if waited >= wait_seconds:
            raise KitError(f"{what}: still {status!r} after {waited / 60:.0f} min; check it on kaggle.com")
        sleep(poll_seconds)
        waited += poll_seconds


def submit_bundle(comp: Competition, bundle_dir: Path, client: Any, message: str, poll_seconds: float = 30.0,
                  wait_seconds: float = 10 * 3600, sleep: Callable[[float], None] = time.sleep,
                  log: Callable[[str], None] = print) -> str:
    """Run every step of a code-competition submission; return the submission's status line."""
    bundle_dir = Path(bundle_dir)
    manifest = load_bundle_manifest(bundle_dir)
    if manifest["competition"] != comp.name:
        raise KitError(f"--bundle {bundle_dir}: made for {manifest['competition']!r}, not {comp.name!r}")
    dataset_meta, kernel_meta = read_metadata(bundle_dir)
    if comp.kaggle_slug not in kernel_meta["competition_sources"]:
        raise KitError(f"{bundle_dir / 'notebook' / KERNEL_METADATA}: competition_sources lacks {comp.kaggle_slug!r}")
    dataset_id, kernel_id = dataset_meta["id"], kernel_meta["id"]
    dataset_dir, notebook_dir = bundle_dir / "dataset", bundle_dir / "notebook"
    log(f"metadata OK: dataset {dataset_id}, notebook {kernel_id}, competition {comp.kaggle_slug}")
    if client.dataset_exists(dataset_id):
        log(f"uploading a new version of {dataset_id}")
        client.dataset_create_version(dataset_dir, message)
    else:
        log(f"creating the private dataset {dataset_id}")
        client.dataset_create_new(dataset_dir)
    wait_for(f"dataset {dataset_id}", lambda: client.dataset_status(dataset_id), ("ready",), ("error",),
             poll_seconds, wait_seconds, sleep, log)
    version = client.kernels_push(notebook_dir)
    log(f"pushed notebook {kernel_id} version {version}; waiting for its run")
    last_failure = ""

    def kernel_status() -> str:
        nonlocal last_failure
        status, last_failure = client.kernels_status(kernel_id)
        return status

    try:
        wait_for(f"notebook {kernel_id}", kernel_status, ("complete",), KERNEL_FAILED, poll_seconds, wait_seconds,
                 sleep, log)
    except KitError as err:
        raise KitError(f"{err}{': ' + last_failure if last_failure else ''}; see the log on kaggle.com") from None
    result = client.competition_submit(comp.kaggle_slug, kernel_id, version, message)
    log(f"submitted {kernel_id} version {version} to {comp.kaggle_slug}: {result}")
    status = client.latest_submission(comp.kaggle_slug)
    log(f"submission status: {status}")
    return status
