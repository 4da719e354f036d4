"""The training notebook `kit remote train` pushes: find the inputs, check them, install the kit offline, run
`kit train` inside Kaggle's session limit, and list what it leaves in /kaggle/working for `kit remote pull`.

It reuses the inference notebook's pieces: `find_inputs` (the upload dataset is found by the id in its
manifest.json, the competition by its files' columns, under either input layout), `verify_files` (every file's
size and sha256), and the parameters cell that `kit simulate`'s machinery overrides. Deterministic like that
notebook: fixed cell ids, no outputs.
"""

from __future__ import annotations

import inspect
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kaggle_kit.ship.kaggle_runtime import verify_files
from kaggle_kit.ship.notebook import PARAMETERS_CELL, find_inputs_source

NOTEBOOK_NAME = "train.ipynb"
OUTPUT_LIST = "kit_remote_output.json"  # what the notebook left, with sha256s: `kit remote pull` checks it
TRAIN_LOG = "kit_train.log"  # kit train's output, beside the run folder: kept even when the kernel ends in error
RUN_FOLDER = "run"  # the run folder's name under /kaggle/working
KAGGLE_SESSION_HOURS = 12.0  # a GPU session's limit
MARGIN_HOURS = 0.5  # kept free for listing the output and saving the notebook


def parameters_source(remote_id: str, competition: str, settings: dict[str, Any], resume: bool) -> str:
    return "\n".join([
        "# Settings: the only cell to edit to run this notebook outside Kaggle (kit's tests override INPUT_ROOT).",
        "import time",
        "",
        "STARTED_AT = time.time()  # Kaggle's session limit counts from the start of the notebook",
        "INPUT_ROOT = '/kaggle/input'  # searched for the upload dataset, the competition and the model",
        "WORKING_DIR = '/kaggle/working'  # the run folder is left here, as run/",
        f"REMOTE_ID = {remote_id!r}  # the upload dataset is the one whose manifest.json has this id",
        f"COMPETITION = {competition!r}",
        f"SETTINGS = {settings!r}  # kit train settings, resolved by kit remote train",
        f"RESUME = {resume!r}  # continue the run shipped in the upload dataset's resume/ folder",
        f"SESSION_HOURS = {KAGGLE_SESSION_HOURS!r}  # Kaggle's GPU session limit",
        f"MARGIN_HOURS = {MARGIN_HOURS!r}  # stop this long before it, between folds",
        "DATASET_DIR = None  # or the upload dataset's folder: skips the search",
        "COMPETITION_DIR = None  # or the competition's folder (train.csv): skips the search",
        "MODEL_DIR = None  # or the model's folder: skips the search",
    ])


TRAIN_SOURCE = '''import json
import os
import shutil
import subprocess
import sys
import tempfile

RUN_DIR = os.path.join(WORKING_DIR, RUN_FOLDER)
command = [sys.executable, "-m", "kaggle_kit", "train", COMPETITION, "--out", RUN_DIR, "--data", COMPETITION_DIR]
if RESUME:
    if not os.path.isdir(RUN_DIR):
        shutil.copytree(os.path.join(DATASET_DIR, "resume"), RUN_DIR)
    for name, key in (("run_config.json", "model"), ("manifest.json", "model_path")):  # the model's path here
        path = os.path.join(RUN_DIR, name)
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        record[key] = MODEL_DIR
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
    command.append("--resume")
else:
    settings_file = os.path.join(tempfile.mkdtemp(), "settings.json")
    with open(settings_file, "w", encoding="utf-8") as handle:
        json.dump(SETTINGS, handle)
    command += ["--config", settings_file, "--model", MODEL_DIR]
hours_left = SESSION_HOURS - MARGIN_HOURS - (time.time() - STARTED_AT) / 3600
command += ["--stop-after-hours", f"{max(hours_left, 0.01):.3f}"]
print("running:", " ".join(command), flush=True)
with open(os.path.join(WORKING_DIR, TRAIN_LOG), "w", encoding="utf-8") as train_log:
    try:  # never raise here: the listing cell must run, so a failed run's finished folds can be pulled
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            print(line, end="", flush=True)
            train_log.write(line)
            train_log.flush()
        TRAIN_EXIT_CODE = process.wait()
    except Exception as err:  # noqa: BLE001 - reported in the log and by the listing cell's error
        train_log.write(f"kit train could not run: {err!r}\\n")
        TRAIN_EXIT_CODE = -1
print(f"kit train exited with code {TRAIN_EXIT_CODE}")'''


LIST_SOURCE = '''import hashlib
import platform


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


files = {}
for root, _, names in os.walk(RUN_DIR):
    for name in sorted(names):
        path = os.path.join(root, name)
        if name.endswith(".lock"):
            continue
        files[os.path.relpath(path, WORKING_DIR).replace(os.sep, "/")] = {"sha256": sha256(path),
                                                                         "size": os.path.getsize(path)}
log_path = os.path.join(WORKING_DIR, TRAIN_LOG)
if os.path.isfile(log_path):
    files[TRAIN_LOG] = {"sha256": sha256(log_path), "size": os.path.getsize(log_path)}
try:
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    torch_version = torch.__version__
except ImportError:
    gpus, torch_version = [], None
output = {"remote_id": REMOTE_ID, "run": RUN_FOLDER, "train_exit_code": TRAIN_EXIT_CODE, "files": files,
          "train_log": TRAIN_LOG,
          "session_seconds": round(time.time() - STARTED_AT, 1), "python": platform.python_version(),
          "torch": torch_version, "gpus": gpus,
          "image": {k: os.environ[k] for k in ("KAGGLE_DOCKER_IMAGE", "KAGGLE_KERNEL_RUN_TYPE") if k in os.environ}}
with open(os.path.join(WORKING_DIR, OUTPUT_LIST), "w", encoding="utf-8") as handle:
    json.dump(output, handle, indent=2, sort_keys=True)
print(f"{len(files)} files of the run listed in {OUTPUT_LIST}")
if TRAIN_EXIT_CODE != 0:
    raise RuntimeError(f"kit train failed (exit code {TRAIN_EXIT_CODE}); its last lines are above, the run folder "
                       f"and {TRAIN_LOG} are kept for kit remote pull")'''


def build_training_notebook(competition_title: str, competition: str, competition_slug: str, remote_id: str,
                            test_columns: list[str], submission_columns: list[str], wheels: list[str],
                            settings: dict[str, Any], resume: bool) -> nbformat.NotebookNode:
    """The notebook for one push. `wheels` are paths relative to the upload dataset's folder."""
    wheel_args = " ".join(f"{{DATASET_DIR}}/{w}" for w in wheels)
    find_call = ("\nif not os.path.isfile(os.path.join(COMPETITION_DIR, 'train.csv')):\n"
                 "    raise RuntimeError(f'input discovery: {COMPETITION_DIR} has no train.csv')")
    cells = [
        (PARAMETERS_CELL, new_code_cell(parameters_source(remote_id, competition, settings, resume),
                                        metadata={"tags": [PARAMETERS_CELL]})),
        ("intro", new_markdown_cell(
            f"# {competition_title}: kaggle-kit training\n\n"
            f"Generated by `kit remote train` for the upload `{remote_id}`. Runs offline: it finds the upload "
            "dataset, the competition's files and the model under `/kaggle/input`, checks every uploaded file "
            "against `manifest.json`, installs kaggle-kit from the uploaded wheels and runs `kit train` with the "
            f"settings of the first cell{' (continuing the uploaded run)' if resume else ''}. It stops between "
            "folds before Kaggle's session limit, and leaves the run folder in `/kaggle/working/run` for "
            "`kit remote pull`.")),
        ("find", new_code_cell("import os\n\n" + find_inputs_source("REMOTE_ID", competition_slug, test_columns,
                                                                      submission_columns) + find_call)),
        ("verify", new_code_cell(inspect.getsource(verify_files).rstrip()
                                 + "\n\n\nMANIFEST = verify_files(DATASET_DIR)")),
        ("install", new_code_cell(f"%pip install --quiet --no-index --no-deps --find-links {{DATASET_DIR}}/wheels "
                                  f"{wheel_args}")),
        ("model-intro", new_markdown_cell(
            "## The model\nFound by the identity `kit remote train` recorded (its config.json's sha256, then its "
            "weight files), wherever Kaggle mounted it: copied into the upload, a dataset or a Kaggle Model.")),
        ("model", new_code_cell(
            "from kaggle_kit.ship.base_model import find_base_model\n\n"
            "MODEL_DIR = MODEL_DIR or str(find_base_model(INPUT_ROOT, MANIFEST['model']['identity']))")),
        ("train-intro", new_markdown_cell(
            "## Train\n`kit train` in its own process, its log streamed here. `--stop-after-hours` is what is left "
            "of the session (less a margin): a fold that would not finish in time is not started, and the run is "
            "left resumable (`kit remote train --resume`).")),
        ("train", new_code_cell(f"RUN_FOLDER = {RUN_FOLDER!r}\nTRAIN_LOG = {TRAIN_LOG!r}\n" + TRAIN_SOURCE)),
        ("list", new_code_cell(f"OUTPUT_LIST = {OUTPUT_LIST!r}\n" + LIST_SOURCE)),
    ]
    nb = new_notebook(metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    for cell_id, cell in cells:
        cell["id"] = cell_id
        nb.cells.append(cell)
    return nb
