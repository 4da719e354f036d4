"""`kit remote train|status|pull`: push a training notebook to Kaggle, follow it, and bring its run folder home.

Every push leaves a record, remote/<competition>/kernels/<kernel>.json (kernel, version, accelerator, image
pinning, upload, the settings asked, the local run name), so `status` and `pull` need only a run or kernel name.
Kaggle is reached only through a client (kaggle_api.KaggleClient, or DryRunClient), as `kit submit` does, and
each kernel state sorts into done, failed or waiting by kagglesdk's KernelWorkerStatus names (submit.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit import config as config_mod
from kaggle_kit.competition import Competition
from kaggle_kit.config import TrainConfig
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json, sha256_file, write_json, write_text
from kaggle_kit.kaggle_api import PushResult
from kaggle_kit.remote.notebook import NOTEBOOK_NAME, OUTPUT_LIST, RUN_FOLDER, TRAIN_LOG, build_training_notebook
from kaggle_kit.remote.upload import Upload, build_upload
from kaggle_kit.runs.folder import RunDir, default_run_path
from kaggle_kit.ship.bundle import Downloader
from kaggle_kit.ship.image import ImagePackages
from kaggle_kit.ship.kaggle_metadata import KERNEL_METADATA, accelerator, slugify, validate_kernel_metadata
from kaggle_kit.ship.submit import (
    DATASET_DONE,
    DATASET_FAILED,
    DATASET_WAITING,
    KERNEL_DONE,
    KERNEL_FAILED,
    KERNEL_WAITING,
    Waiter,
    check_push,
)

REMOTE_ROOT = Path("remote")
RECORD_FILE = "remote.json"  # in a pulled run folder: where and how it was trained
# Settings the notebook sets itself (paths on Kaggle, the session limit) or that a run records on its own.
NOT_FORWARDED = ("competition", "model", "data", "stop_after_hours", "world_size", "competition_version",
                 "base_model", "targets")
IMAGE_PINNING = "original"  # kernel-metadata.json docker_image_pinning_type: later versions keep the first's image
QUOTA_WORDS = ("quota", "weekly limit", "usage limit")
LOG_LINES = 12


# ---- settings -------------------------------------------------------------------------------------------------

def asked_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved settings that differ from the defaults, minus the ones the notebook sets: what the notebook
    passes to `kit train --config` and what a pulled run_config.json must hold."""
    values = cfg.to_dict()
    return {k: v for k, v in values.items() if k not in NOT_FORWARDED and v != config_mod.FIELDS[k].default}


def check_run_config(run_config: dict[str, Any], asked: dict[str, Any], where: str) -> None:
    """A pulled run was trained with what was asked: every asked setting that changes results is recorded as is."""
    for name, value in sorted(asked.items()):
        if config_mod.field_info(name).get("resume_safe"):
            continue
        if run_config.get(name) != value:
            raise KitError(f"{where}: run_config.json has {name} {run_config.get(name)!r}, but "
                           f"{value!r} was asked; this is not the run that was pushed")


def check_no_local_files(comp: Competition, cfg: TrainConfig) -> None:
    """Refuse, before anything is uploaded, settings that need files from this machine the upload does not carry
    yet: a plugin's extra files (not in the competition's data on Kaggle), `--pseudo`, `--distill`, `extra`
    paths. On Kaggle `kit train` would fail on them after the upload and the session's start."""
    needs = [f"--{name} {getattr(cfg, name)}" for name in ("pseudo", "distill") if getattr(cfg, name)]
    needs += [f"extra {key}: {value}" for key, value in sorted(cfg.extra.items())]
    needs += [f"{comp.name}'s {extra.name}" for extra in comp.extra_files]
    if needs:
        raise KitError(f"kit remote train {comp.name}: {'; '.join(needs)}: a file from this machine, which kit "
                       f"remote does not upload yet (only the kit, the model and a run to resume); train this run "
                       f"locally with kit train")


# ---- records --------------------------------------------------------------------------------------------------

def record_path(root: Path, competition: str, kernel_slug: str) -> Path:
    return root / competition / "kernels" / f"{kernel_slug}.json"


def all_records(root: Path) -> list[dict[str, Any]]:
    return [read_json(p) for p in sorted(root.glob("*/kernels/*.json"))]


def find_record(root: Path, name: str) -> dict[str, Any]:
    """The record of a kernel (owner/slug or slug) or of a local run (its folder or its name)."""
    key = Path(name).name
    for record in all_records(root):
        if name in (record["kernel"], record["kernel"].split("/")[1]) or key == record["run_name"]:
            return record
    known = ", ".join(f"{r['run_name']} ({r['kernel']})" for r in all_records(root)) or "none"
    raise KitError(f"kit remote: no pushed run or kernel {name!r} under {root}/ (known: {known}); push one with "
                   f"kit remote train")


def save_record(root: Path, record: dict[str, Any]) -> Path:
    path = record_path(root, record["competition"], record["kernel"].split("/")[1])
    write_json(path, record)
    return path


# ---- pushing --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pushed:
    record: dict[str, Any]
    upload: Upload
    notebook: Path


def kernel_metadata(kernel_id: str, upload: Upload, comp: Competition, accelerator_name: str) -> dict[str, Any]:
    machine = accelerator(accelerator_name)
    slug = kernel_id.split("/")[1]
    meta = {"id": kernel_id, "title": slug, "code_file": NOTEBOOK_NAME, "language": "python",
            "kernel_type": "notebook", "is_private": True, "enable_gpu": machine.enable_gpu, "enable_tpu": False,
            "enable_internet": False, "dataset_sources": [upload.dataset_id],
            "competition_sources": [comp.kaggle_slug], "kernel_sources": [], "model_sources": [],
            "docker_image_pinning_type": IMAGE_PINNING}
    if machine.machine_shape:
        meta["machine_shape"] = machine.machine_shape
    source = upload.manifest["model"]["source"]
    if source["kind"] == "kaggle-model":
        meta["model_sources"] = [source["ref"]]
    elif source["kind"] == "dataset":
        meta["dataset_sources"].append(source["ref"])
    return meta


def quota_problem(text: str) -> bool:
    return any(word in text.lower() for word in QUOTA_WORDS)


def check_remote_push(push: PushResult, kernel_id: str, meta: dict[str, Any], log: Callable[[str], None]) -> None:
    """`check_push`, with a refusal for quota said as such."""
    if push.error and quota_problem(push.error):
        raise KitError(f"kernels_push {kernel_id}: Kaggle refused the run, accelerator quota exceeded "
                       f"({push.error}); the GPU quota resets weekly (kaggle.com/settings shows it), or push with "
                       f"--accelerator none")
    if push.invalid_competition_sources and not push.error:
        competition = push.invalid_competition_sources[0]
        raise KitError(f"kernels_push {kernel_id}: Kaggle did not attach the competition {competition!r}: join it and "
                       f"accept its rules at https://www.kaggle.com/competitions/{competition}/rules with the account "
                       f"of your API token, then run kit remote train again")
    check_push(push, kernel_id, meta, log)


def upload_dataset(client: Any, upload: Upload, waiter: Waiter, log: Callable[[str], None]) -> None:
    """Create the upload dataset unless Kaggle has it already (its slug is its content's hash), then wait until
    it is ready."""
    if client.dataset_exists(upload.dataset_id):
        log(f"upload {upload.dataset_id}: Kaggle has this content already; reusing it")
        return
    log(f"uploading the private dataset {upload.dataset_id} ({size_text(upload.path)})")
    client.dataset_create_new(upload.path)
    waiter.until(f"dataset {upload.dataset_id}", lambda: client.dataset_status(upload.dataset_id).status,
                 DATASET_DONE, DATASET_FAILED, DATASET_WAITING,
                 lambda status: f"; Kaggle could not process the upload: see kaggle.com/datasets/{upload.dataset_id}")


def size_text(folder: Path) -> str:
    return f"{sum(p.stat().st_size for p in folder.rglob('*') if p.is_file()) / 1e6:.1f} MB"


def push_training(comp: Competition, cfg: TrainConfig, client: Any, owner: str, accelerator_name: str,
                  model_source: str, image: ImagePackages, downloader: Downloader, waiter: Waiter,
                  root: Path = REMOTE_ROOT, log: Callable[[str], None] = print, resume: str | None = None,
                  runs_root: Path = Path("runs"), save: bool = True) -> Pushed:
    """Upload (or reuse) the dataset, write and push the training notebook, record the push."""
    from kaggle_kit.models.model import check_model_dir, default_model_path

    previous = find_record(root, resume) if resume else None
    if previous is not None:
        if previous["competition"] != comp.name:
            raise KitError(f"--resume {resume}: a run of {previous['competition']!r}, not of {comp.name!r}")
        run_path = runs_root / comp.name / previous["run_name"]
        if not (run_path / "run_config.json").is_file():
            raise KitError(f"--resume {resume}: pull it first (kit remote pull {previous['run_name']}); "
                           f"{run_path} holds no run")
        if RunDir(run_path).is_complete():
            raise KitError(f"--resume {resume}: {run_path} is complete; nothing is left to train")
        asked, run_name = previous["settings"], previous["run_name"]
        model_path, model_source = Path(previous["model"]["path"]), previous["model"]["source"]
        kernel_id = previous["kernel"]
    else:
        run_path = None
        check_no_local_files(comp, cfg)
        asked = asked_settings(cfg)
        model_path = check_model_dir(cfg.model) if cfg.model else default_model_path()
        run_name = f"{default_run_path(Path(), comp.name, model_path).name}-remote"
        stamp = run_name[:15]  # the time, YYYYmmdd-HHMMSS
        kernel_id = f"{owner}/{slugify(comp.name)}-kit-train-{stamp}"
    machine = accelerator(accelerator_name)
    upload = build_upload(comp, model_path, model_source, root / comp.name / "datasets", owner, image, downloader,
                          log, resume_run=run_path)
    upload_dataset(client, upload, waiter, log)
    folder = root / comp.name / "notebooks" / kernel_id.split("/")[1]
    nb = build_training_notebook(comp.title, comp.name, comp.kaggle_slug, upload.remote_id,
                                 comp.schema.test_columns(), comp.schema.submission_columns(),
                                 upload.manifest["wheels"], asked, resume=previous is not None)
    from kaggle_kit.ship.notebook import notebook_text

    write_text(folder / NOTEBOOK_NAME, notebook_text(nb))
    meta = kernel_metadata(kernel_id, upload, comp, machine.name)
    write_json(folder / KERNEL_METADATA, meta)
    validate_kernel_metadata(meta, folder)
    push = client.kernels_push(folder)
    check_remote_push(push, kernel_id, meta, log)
    record = {"kernel": kernel_id, "competition": comp.name, "run_name": run_name, "version": push.version,
              "url": push.url, "accelerator": machine.name, "machine_shape": machine.machine_shape,
              "image": {"pinning": IMAGE_PINNING, "list": image.path.name, "list_date": image.date,
                        "python": image.python},
              "dataset": upload.dataset_id, "remote_id": upload.remote_id, "settings": asked,
              "model": {"path": str(model_path), "source": model_source}, "resume": previous is not None,
              "pushed": now_iso(), "versions": [*(previous or {}).get("versions", []), push.version]}
    if save:
        save_record(root, record)
    log(f"pushed {kernel_id} version {push.version} on {machine.name} ({machine.note}): {push.url}".rstrip())
    log(f"follow it with: kit remote status {run_name}; bring it home with: kit remote pull {run_name}")
    return Pushed(record, upload, folder)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ---- following and pulling ------------------------------------------------------------------------------------

def describe_state(status: str, failure: str) -> str:
    """A kernel's state as one of complete, running, error, cancelled, quota."""
    if status in KERNEL_DONE:
        return "complete"
    if status in KERNEL_WAITING:
        return "running"
    if status in ("cancel_requested", "cancel_acknowledged"):
        return "cancelled"
    if status in KERNEL_FAILED:
        return "quota" if quota_problem(failure) else "error"
    return status


def status_line(record: dict[str, Any], client: Any) -> str:
    status, failure = client.kernels_status(record["kernel"])
    state = describe_state(status, failure)
    hint = {"complete": f"kit remote pull {record['run_name']}",
            "running": "check again later",
            "cancelled": f"push it again: kit remote train {record['competition']} --resume {record['run_name']}",
            "quota": "the GPU quota resets weekly",
            "error": f"kit remote pull {record['run_name']} shows the log's last lines"}.get(state, "")
    detail = f" ({failure})" if failure else ""
    return (f"{record['run_name']}: {record['kernel']} version {record['version']} on {record['accelerator']}: "
            f"{state}{detail}" + (f"; {hint}" if hint else ""))


def log_tail(folder: Path, lines: int = LOG_LINES) -> list[str]:
    """The last lines of the kernel log kernels_output saved (<slug>.log: Kaggle's JSON list of stream chunks,
    or plain text)."""
    logs = sorted(folder.glob("*.log"))
    if not logs:
        return []
    text = logs[0].read_text(encoding="utf-8", errors="replace")
    try:
        chunks = json.loads(text)
        text = "".join(c.get("data", "") for c in chunks if isinstance(c, dict))
    except ValueError:
        pass
    return [line for line in text.splitlines() if line.strip()][-lines:]


def pull_run(record: dict[str, Any], client: Any, waiter: Waiter, root: Path = REMOTE_ROOT,
             runs_root: Path = Path("runs"), log: Callable[[str], None] = print, data_dir: Path | None = None) -> Path:
    """Wait (bounded) for the kernel to end, fetch its output to a staging folder, check it and rename the run
    folder into runs/<competition>/<run name>. A kernel that ended in error or was cancelled lands as a partial,
    resumable run when its output holds finished folds (the notebook lists the run even when kit train fails);
    else one line with the reason and the log's end.

    `data_dir` (default data/<competition>): when its train.csv is the one the run trained on (sha256), the run
    points at it instead of its Kaggle input folder, so ensembles and multi-run bundles find the labels here."""
    kernel = record["kernel"]
    staging = root / record["competition"] / "pulls" / f"{kernel.split('/')[1]}-v{record['version']}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    last_failure = ""
    partial: dict[str, Any] = {}  # set when a failed kernel left finished folds: its state and the staged run

    def poll() -> str:
        nonlocal last_failure
        status, last_failure = client.kernels_status(kernel)
        return status

    def failure_detail(status: str) -> str:
        state = describe_state(status, last_failure)
        reason = f": {last_failure}" if last_failure else ""
        if state == "quota":
            return f"{reason}; accelerator quota exceeded: the GPU quota resets weekly (kaggle.com/settings)"
        try:
            client.kernels_output(kernel, staging)
        except KitError as err:
            return f"{reason}; its log could not be fetched ({err})"
        tail = log_tail(staging) or text_tail(staging / TRAIN_LOG)
        for line in tail:
            log(f"  log: {line}")
        try:
            partial.update(state=state, run=check_output(staging, record))
        except KitError:
            pass
        if state == "cancelled":
            return (f"{reason}; the run was cancelled on kaggle.com and left no finished fold; push it again with "
                    f"kit remote train {record['competition']}")
        return f"{reason}; the log ends: {tail[-1] if tail else '(empty)'}"

    try:
        waiter.until(f"notebook {kernel} version {record['version']}", poll, KERNEL_DONE, KERNEL_FAILED,
                     KERNEL_WAITING, failure_detail)
    except KitError as err:
        if not partial:
            raise
        log(f"note: {err}")
        run_staging, state = partial["run"], partial["state"]
    else:
        client.kernels_output(kernel, staging)
        run_staging, state = check_output(staging, record), "complete"
    remote = {**remote_record(record, read_json(staging / OUTPUT_LIST)), "kernel_state": state}
    local_data = data_dir or Path("data") / record["competition"]
    remote["data_on_kaggle"] = point_at_local_data(RunDir(run_staging), local_data, log)
    write_json(run_staging / RECORD_FILE, remote)
    dest = runs_root / record["competition"] / record["run_name"]
    replace_folder(run_staging, dest)
    shutil.rmtree(staging, ignore_errors=True)
    run = RunDir(dest)
    manifest = run.load_manifest()
    folds = run.finished_folds()
    resume_hint = f"train the rest with kit remote train {record['competition']} --resume {record['run_name']}"
    if state != "complete":
        log(f"pulled {dest}: PARTIAL, the kernel ended {state}; folds {','.join(map(str, folds))} finished and "
            f"verified; {resume_hint}")
    elif manifest.get("status") == "complete":
        log(f"pulled {dest}: complete, folds {','.join(map(str, folds))}; next: kit bundle "
            f"{record['competition']} --run {dest}")
    else:
        log(f"pulled {dest}: {manifest.get('status')}, folds {','.join(map(str, folds)) or 'none'} finished"
            f"{' (' + manifest['stopped'] + ')' if manifest.get('stopped') else ''}; {resume_hint}")
    return dest


def text_tail(path: Path, lines: int = LOG_LINES) -> list[str]:
    """The last non-empty lines of a text file (the notebook's kit train log); none when it is missing."""
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()][-lines:]


def check_output(staging: Path, record: dict[str, Any]) -> Path:
    """The fetched output is what the pushed notebook left: its file list, every file's size and sha256, the
    run's manifest, and a run_config.json with the settings asked. Returns the staged run folder."""
    where = f"kit remote pull {record['kernel']} version {record['version']}"
    listing = staging / OUTPUT_LIST
    if not listing.is_file():
        raise KitError(f"{where}: the output has no {OUTPUT_LIST}: the notebook stopped before listing its run "
                       f"(see its log on kaggle.com)")
    output = read_json(listing)
    if output.get("remote_id") != record["remote_id"]:
        raise KitError(f"{where}: the output is of upload {output.get('remote_id')!r}, not {record['remote_id']!r} "
                       f"(a newer version was pushed?); pull that one")
    for name, expected in sorted(output["files"].items()):
        path = staging / name
        if not path.is_file():
            raise KitError(f"{where}: {name} is listed in {OUTPUT_LIST} but was not downloaded")
        if path.stat().st_size != expected["size"] or sha256_file(path) != expected["sha256"]:
            raise KitError(f"{where}: {name} does not match its sha256 in {OUTPUT_LIST}: the download is damaged; "
                           f"pull again")
    run_dir = staging / output.get("run", RUN_FOLDER)
    listed = set(output["files"])
    stray = sorted(p.relative_to(staging).as_posix() for p in run_dir.rglob("*")
                   if p.is_file() and p.relative_to(staging).as_posix() not in listed and not p.name.endswith(".lock"))
    if stray:
        raise KitError(f"{where}: {', '.join(stray[:3])} in the run folder are not in {OUTPUT_LIST}")
    run = RunDir(run_dir)
    if not run.manifest.is_file() or not run.config.is_file():
        raise KitError(f"{where}: the run folder has no manifest.json or run_config.json (kit train failed before "
                       f"starting; see the log)")
    run_config = read_json(run.config)
    if run_config.get("competition") != record["competition"]:
        raise KitError(f"{where}: a run of {run_config.get('competition')!r}, not of {record['competition']!r}")
    check_run_config(run_config, record["settings"], where)
    if output.get("train_exit_code") not in (0, None) and not run.finished_folds():
        raise KitError(f"{where}: kit train failed on Kaggle (exit code {output['train_exit_code']}) before any "
                       f"fold finished")
    return run_dir


def point_at_local_data(run: RunDir, folder: Path, log: Callable[[str], None]) -> str | None:
    """Set run_config.json's `data` to `folder` when its train.csv has the sha256 the run recorded (the same data:
    `--resume` may change this setting too); returns the Kaggle folder it replaced."""
    config = read_json(run.config)
    recorded = run.load_manifest().get("data", {}).get("train.csv", {}).get("sha256")
    local = folder / "train.csv"
    if recorded and local.is_file() and sha256_file(local) == recorded:
        write_json(run.config, {**config, "data": str(folder.resolve())})
        return config.get("data")
    log(f"note: {local} is not the train.csv this run trained on (sha256 {str(recorded)[:12]}); kit ensemble and "
        f"multi-run kit bundle need --data with it")
    return None


def remote_record(record: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
    """What a pulled run folder says about where it was trained."""
    image = {**record["image"], "python_seen": output.get("python"), "torch": output.get("torch"),
             **{k.lower(): v for k, v in (output.get("image") or {}).items()}}
    return {"trained_on": "kaggle", "kernel": record["kernel"], "version": record["version"], "url": record["url"],
            "accelerator": record["accelerator"], "machine_shape": record["machine_shape"], "gpus": output.get("gpus"),
            "image": image, "dataset": record["dataset"], "remote_id": record["remote_id"],
            "session_seconds": output.get("session_seconds"), "pushed": record["pushed"], "pulled": now_iso()}


def replace_folder(new: Path, dest: Path) -> None:
    """Move `new` to `dest`, replacing an older pull of the same run only once the new one is in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(f".{dest.name}.replaced")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        os.replace(dest, old)
    shutil.move(str(new), str(dest))
    if old.exists():
        shutil.rmtree(old)
