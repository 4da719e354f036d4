"""`kit simulate`: run a bundle's notebook the way Kaggle would, offline, and check what it writes.

The notebook finds its inputs itself, so simulate only lays out /kaggle/input in Kaggle's new layout
(competitions/<slug>, datasets/<owner>/<slug>), the old one (/kaggle/input/<slug>) or a mix, and points
INPUT_ROOT there. The kernel runs in a fresh, throwaway virtual environment layered on "the image": by default a
stand-in made of links to this interpreter's distributions that the image list names (never its other packages,
and never kaggle-kit or a plugin, which must come from the bundle's wheels); with --image, a cached venv of the
image's Python and pinned versions (image_venv). The notebook runs headless under `unshare --net` with only
loopback up (the kernel talks to nbclient over loopback ZMQ), or, where unshare is unavailable, with connect()
patched to refuse non-loopback addresses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.ship.image import ImagePackages

KERNEL_NAME = "kaggle-image-sim"
KIT_DISTRIBUTION = "kaggle-kit"
NETWORK_BLOCKER = '''"""Installed by kit simulate: refuse connections to anything but loopback, as if offline."""
import socket

_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _allowed(sock, address):
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    return str(address[0]) in ("127.0.0.1", "::1", "localhost")


def _guarded_connect(self, address):
    if not _allowed(self, address):
        raise OSError(101, "Network is unreachable (blocked by kit simulate)")
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    return _connect_ex(self, address) if _allowed(self, address) else 101


socket.socket.connect, socket.socket.connect_ex = _guarded_connect, _guarded_connect_ex
'''


@dataclass
class Simulation:
    """What a simulated Kaggle run measured and produced."""

    submission: Path | None  # the --output copy, if any
    rows: int
    network: str
    phases: dict[str, float] = field(default_factory=dict)
    fold_seconds: dict[str, float] = field(default_factory=dict)
    projected_seconds: float = 0.0
    hidden_rows: int = 0
    max_abs_diff: float = 0.0
    kit_file: str = ""
    layout: str = "new"
    environment: str = ""
    python: str = ""
    versions: dict[str, str] = field(default_factory=dict)  # what the notebook's kernel imported
    fallback: str = ""  # the notebook's line on test rows that got the fallback prediction, if any
    test_time_seconds: dict[str, float] = field(default_factory=dict)  # per fold, inside its fold's seconds


# ---- the environment ------------------------------------------------------------------------------------------

def unshare_works() -> bool:
    """Whether this process may make a network namespace and bring its loopback up (root, or user namespaces)."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True)
    return probe.returncode == 0


def requirement_closure(names: set[str], installed: dict[str, Any]) -> set[str]:
    """`names` and everything their installed versions require here (canonical names of installed ones only)."""
    todo, found = list(names), set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found or name not in installed:
            continue
        found.add(name)
        for text in installed[name].requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def record_entries(dist: Any) -> dict[str, set[str]]:
    """Top-level names a distribution installed (from its RECORD), each with the names directly inside it."""
    entries: dict[str, set[str]] = {}
    for line in (dist.read_text("RECORD") or "").splitlines():
        path = line.rsplit(",", 2)[0].strip('"')
        top, _, rest = path.partition("/")
        if top and top not in ("..", "__pycache__"):
            entries.setdefault(top, set()).update([rest.split("/", 1)[0]] if rest else [])
    return entries


def image_site_dir(root: Path, image: ImagePackages) -> tuple[Path, list[str]]:
    """A folder of links to this interpreter's distributions that the image list names, the kernel (ipykernel) and
    what their versions here require; returns it and the names of the distributions it leaves out. kaggle-kit and
    plugins are never linked: they come from the bundle's wheels, as on Kaggle."""
    from importlib.metadata import distributions

    folder = root / "image-site"
    folder.mkdir(parents=True)
    site_dirs = {Path(p).resolve() for p in site.getsitepackages()}
    installed: dict[str, Any] = {}
    for dist in distributions():  # only the environment's own site-packages, not sys.path additions
        name = dist.metadata["Name"]
        if name and Path(dist.locate_file("")).resolve() in site_dirs:
            installed.setdefault(canonicalize_name(name), dist)
    wanted = requirement_closure((set(image.versions) | {"ipykernel"}) - {KIT_DISTRIBUTION}, installed)
    wanted.discard(KIT_DISTRIBUTION)
    owners: dict[str, set[bool]] = {}  # top-level entry -> {is it wanted} over the distributions that own files there
    inside: dict[str, set[str]] = {}  # top-level entry -> names in it that wanted distributions installed
    bases: dict[str, Path] = {}
    for name, dist in installed.items():
        keep = name in wanted
        base = Path(dist.locate_file("")).resolve()
        for top, names in record_entries(dist).items():
            owners.setdefault(top, set()).add(keep)
            if keep:
                inside.setdefault(top, set()).update(names)
                bases[top] = base
    for top, base in sorted(bases.items()):
        path = base / top
        if not path.exists():
            continue
        if owners[top] == {True} or not path.is_dir():
            (folder / top).symlink_to(path)
            continue
        (folder / top).mkdir()  # shared with a left-out distribution (a namespace folder): link only what is wanted
        for name in sorted(inside[top]):
            if (path / name).exists():
                (folder / top / name).symlink_to(path / name)
    left_out = sorted((installed[n].metadata["Name"] for n in installed if n not in wanted), key=str.lower)
    return folder, left_out


def make_kernel_venv(root: Path, python: Path, site_dir: Path, block_with_socket_patch: bool) -> Path:
    """A fresh venv of `python` whose site-packages sees `site_dir` (the image) behind its own, so the notebook's
    %pip installs land in the throwaway venv and never in the image; returns its python."""
    venv = root / "venv"
    subprocess.run([str(python), "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    venv_python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    lines = [f"import site; site.addsitedir({str(site_dir)!r})"]
    if block_with_socket_patch:
        (purelib / "_kit_block_network.py").write_text(NETWORK_BLOCKER)
        lines.insert(0, "import _kit_block_network")
    (purelib / "kaggle_image.pth").write_text("\n".join(lines) + "\n")
    return venv_python


def make_image_venv(root: Path, block_with_socket_patch: bool, image: ImagePackages | None = None) -> Path:
    """The stand-in: a venv of this interpreter over links to the listed distributions; returns its python."""
    from kaggle_kit.ship.image import load_image_packages

    site_dir, _ = image_site_dir(root, image or load_image_packages())
    return make_kernel_venv(root, Path(sys.executable), site_dir, block_with_socket_patch)


def write_kernelspec(root: Path, python: Path) -> Path:
    """A kernelspec whose argv starts the venv's python; nbclient finds it through JUPYTER_PATH."""
    jupyter = root / "jupyter"
    spec_dir = jupyter / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Kaggle image (simulated)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return jupyter


def kernel_env(root: Path, jupyter: Path, hide_gpu: bool = True) -> dict[str, str]:
    """The environment of the notebook run: no paths leaking the checkout, jupyter state under the temp dir.

    CUDA is hidden by default: the notebook's predictions are compared with `kit predict` on the CPU to 1e-4, which a
    GPU's bf16/fp16 autocast would miss on any machine with a GPU (the projected runtime is then a CPU's, on the safe
    side). `hide_gpu=False` (benchmarks/gpu_acceptance.py) lets the notebook run on the GPU, compared within a
    tolerance that fits the run's precision.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "JUPYTER_PATH")}
    env.update(JUPYTER_PATH=str(jupyter), JUPYTER_RUNTIME_DIR=str(root / "runtime"), IPYTHONDIR=str(root / "ipython"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", PYDEVD_DISABLE_FILE_VALIDATION="1",
               PATH=f"{root / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


# ---- running the notebook -------------------------------------------------------------------------------------

def execute(notebook_in: str, notebook_out: str, cwd: str, timeout: str) -> int:
    """Entry point of the runner process: execute the notebook with nbclient, save it even when a cell fails."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(notebook_in, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=int(timeout), resources={"metadata": {"path": cwd}})
    code = 0
    try:
        client.execute()
    except CellExecutionError:
        code = 1
    nbformat.write(nb, notebook_out)
    return code


def run_notebook(nb_path: Path, out_path: Path, cwd: Path, env: dict[str, str], use_unshare: bool,
                 timeout: int) -> None:
    runner = [sys.executable, "-m", "kaggle_kit.ship.simulate", str(nb_path), str(out_path), str(cwd), str(timeout)]
    if use_unshare:
        runner = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *runner]
    result = subprocess.run(runner, env=env, cwd=cwd, capture_output=True, text=True)
    if not out_path.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise KitError(f"simulate: the notebook runner failed before saving the notebook: {last}")
    failure = notebook_error(read_json(out_path))
    if failure or result.returncode != 0:
        reason = failure or f"runner exit code {result.returncode}"
        raise KitError(f"simulate: the notebook failed offline: {reason}")


def notebook_error(nb: dict[str, Any]) -> str | None:
    """`cell <id>: <ExceptionType>: <message>` for the first failing cell, or None."""
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {cell.get('id')!r}: {output.get('ename')}: {output.get('evalue')}"
    return None


def cell_seconds(nb: dict[str, Any]) -> dict[str, float]:
    """Wall time of each executed code cell, from the timestamps nbclient records."""
    seconds = {}
    for cell in nb["cells"]:
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            elapsed = _timestamp(end) - _timestamp(start)
            seconds[cell["id"]] = elapsed.total_seconds()
    return seconds


def _timestamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- the whole simulation -------------------------------------------------------------------------------------

LAYOUTS = ("new", "old", "mixed")


def kaggle_folders(root: Path, bundle_dir: Path, comp, data_dir: Path, layout: str = "new",
                   base_model: Path | None = None) -> dict[str, str]:
    """/kaggle/input in Kaggle's `layout` and /kaggle/working under `root`; returns the notebook's INPUT_ROOT and
    OUTPUT_PATH. The dataset is linked, not copied; the competition folder gets test.csv and the sample.

    new: input/competitions/<competition>/ and input/datasets/<owner>/<dataset>/; old: input/<competition>/ and
    input/<dataset>/; mixed: the competition in the new layout, the dataset in the old.
    """
    if layout not in LAYOUTS:
        raise KitError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    owner, dataset_slug = read_json(bundle_dir / "dataset" / "dataset-metadata.json")["id"].split("/")
    inputs, working = root / "kaggle" / "input", root / "kaggle" / "working"
    working.mkdir(parents=True)
    competition = inputs / "competitions" / comp.kaggle_slug if layout != "old" else inputs / comp.kaggle_slug
    dataset = inputs / "datasets" / owner / dataset_slug if layout == "new" else inputs / dataset_slug
    competition.mkdir(parents=True)
    dataset.parent.mkdir(parents=True, exist_ok=True)
    dataset.symlink_to((bundle_dir / "dataset").resolve(), target_is_directory=True)
    for name in ("test.csv", "sample_submission.csv"):
        shutil.copyfile(data_dir / name, competition / name)
    from kaggle_kit.data.load import copy_row_files, load_test  # per-row files (FBE's essays) go in test/

    copy_row_files(comp, load_test(comp, data_dir / "test.csv", lenient=True), data_dir, "test", competition, "test")
    if base_model is not None:  # a LoRA bundle's base, attached as a Kaggle Model would be
        name = Path(base_model).resolve().name.lower()
        mount = (inputs / "models" / "owner" / name if layout == "new" else inputs / name) / "transformers/default/1"
        mount.parent.mkdir(parents=True)
        mount.symlink_to(Path(base_model).resolve(), target_is_directory=True)
    return {"INPUT_ROOT": str(inputs), "OUTPUT_PATH": str(working / "submission.csv")}


def found_inputs(nb: dict[str, Any]) -> list[str]:
    """The notebook's own `inputs: ...` lines: which folders it used."""
    lines = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            lines += [line for line in text.splitlines() if line.startswith(("inputs:", "WARNING: major"))]
    return lines


def prepared_notebook(bundle_dir: Path, params: dict[str, str], path: Path) -> Path:
    """The bundle's notebook with the simulated paths injected and the simulated kernel selected."""
    import nbformat

    from kaggle_kit.ship.notebook import NOTEBOOK_NAME, inject_parameters, read_notebook

    nb = inject_parameters(read_notebook(bundle_dir / "notebook" / NOTEBOOK_NAME), params)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Kaggle image (simulated)",
                                 "language": "python"}
    nbformat.write(nb, str(path))
    return path


def difference_from_kit_predict(comp, manifest: dict[str, Any], bundle_dir: Path, data_dir: Path, test_df,
                                sample, submission, base_model: Path | None = None) -> float:
    """Largest absolute difference between the notebook's submission and `kit predict --lenient`'s code in this
    process (the rows it can predict by `predict_runs`, the others by the runs' fallback)."""
    from kaggle_kit.predict.fallback import predict_with_fallback
    from kaggle_kit.predict.quantize import manifest_mode
    from kaggle_kit.predict.submission import submission_difference, submission_frame
    from kaggle_kit.predict.test_time import from_record
    from kaggle_kit.ship.kaggle_runtime import DEFAULT_BUDGET_HOURS

    dataset = bundle_dir / "dataset"
    runs = manifest["runs"]
    test_time = from_record(manifest.get("test_time"), "the bundle manifest's test_time")
    preds, _ = predict_with_fallback(comp, test_df, [dataset / r["path"] for r in runs], [r["weight"] for r in runs],
                                     device="cpu", folds=[r["folds"] for r in runs], data_dir=data_dir,
                                     postprocess_state=(manifest.get("ensemble") or {}).get("postprocess"),
                                     base_model=base_model or _copied_base(manifest, dataset),
                                     merge_lora=bool((manifest.get("base_model") or {}).get("merge")),
                                     quantize=manifest_mode(manifest), test_time=test_time,
                                     test_time_seconds=(test_time.allowance_seconds(DEFAULT_BUDGET_HOURS)
                                                        if test_time is not None else 0.0))
    return submission_difference(comp, submission, submission_frame(comp, test_df, preds, sample))


def attached_base(manifest: dict[str, Any]) -> bool:
    """Whether the bundle's LoRA runs get their base model from a separately attached input (not a copy)."""
    return bool(manifest.get("base_model")) and not manifest["base_model"].get("path")


def _copied_base(manifest: dict[str, Any], dataset: Path) -> Path | None:
    path = (manifest.get("base_model") or {}).get("path")
    return dataset / path if path else None


def kernel_packages(root: Path, image: ImagePackages, wheels: Path, use_image: bool, python: Path | None,
                    log: Callable[[str], None]) -> tuple[Path, Path, str]:
    """The interpreter and site-packages a notebook's kernel runs on, and their description: the image venv
    (`use_image`: the image's Python and pinned versions of what `wheels` require) or the stand-in (this
    interpreter, only the packages the image list names)."""
    if use_image:
        from kaggle_kit.ship.image_venv import ensure_image_venv, find_python

        interpreter = find_python(image.python, python)
        site_dir = ensure_image_venv(image, wheels_requirements(wheels), interpreter, log)
        return interpreter, site_dir, f"image venv (Python {image.python}, {image.path.name} {image.date})"
    site_dir, left_out = image_site_dir(root, image)
    return Path(sys.executable), site_dir, (f"stand-in (this Python {platform.python_version()}, only the packages "
                                            f"{image.path.name} lists; {len(left_out)} others hidden)")


def wheels_requirements(wheels: Path) -> list[Requirement]:
    """What the wheels in `wheels` (a bundle's, an upload's) require, kaggle-kit itself left out (it is one of
    them)."""
    from kaggle_kit.ship.bundle import wheel_requirements

    reqs = [r for w in sorted(wheels.glob("*.whl")) for r in wheel_requirements(w)
            if canonicalize_name(r.name) != KIT_DISTRIBUTION]
    return list({canonicalize_name(r.name): r for r in reqs}.values())


def simulate(bundle_dir: Path, data_dir: Path, output: Path | None = None, timeout: int = 1800,
             log: Callable[[str], None] = print, layout: str = "new", use_image: bool = False,
             python: Path | None = None, image: ImagePackages | None = None,
             base_model: Path | None = None, hide_gpu: bool = True, tolerance: float = 1e-4) -> Simulation:
    """Run the bundle's notebook offline on `data_dir`'s test.csv, check the submission against `kit predict`.

    A LoRA bundle whose base model is attached on Kaggle (not copied) needs `base_model`: the folder is mounted
    as a separate input, as Kaggle mounts a Model, and the notebook has to find it there by its identity."""
    import pandas as pd

    from kaggle_kit.data.load import load_test, read_csv
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship.bundle import check_bundled_folds, load_bundle_manifest
    from kaggle_kit.ship.image import load_image_packages
    from kaggle_kit.ship.kaggle_runtime import REPORT_NAME, submission_problems

    bundle_dir, data_dir = Path(bundle_dir), Path(data_dir)
    manifest = load_bundle_manifest(bundle_dir)
    comp = get_competition(manifest["competition"])
    check_bundled_folds(bundle_dir, manifest)
    test_df = load_test(comp, data_dir / "test.csv", lenient=True)  # as the notebook reads it
    sample = read_csv(data_dir / "sample_submission.csv")
    image = image or load_image_packages()
    assumed = manifest.get("image_packages", {})
    if (assumed.get("file"), assumed.get("date")) != (image.path.name, image.date):
        for line in image_list_mismatch(manifest, image):
            log(line)
    if layout not in LAYOUTS:
        raise KitError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    attached = attached_base(manifest)
    if attached and base_model is None:
        raise KitError(f"simulate: the bundle's LoRA runs need their base model "
                       f"({manifest['base_model']['identity'].get('name')}), attached on Kaggle as "
                       f"{manifest['base_model']['source']['ref']}: pass --base-model DIR")
    if base_model is not None and not attached:
        raise KitError("--base-model: this bundle attaches no base model (its folds hold whole models, or it "
                       "copied the base into the dataset)")
    use_unshare = unshare_works()
    network = "unshare --net (loopback only)" if use_unshare else "socket patch (loopback only)"
    if not use_unshare:
        log("warning: `unshare --net` is unavailable here; blocking the network by patching socket.connect instead")
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kit-simulate-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        params = kaggle_folders(root, bundle_dir, comp, data_dir, layout, base_model)
        interpreter, site_dir, environment = kernel_packages(root, image, bundle_dir / "dataset" / "wheels",
                                                             use_image, python, log)
        if not use_image:
            for line in stand_in_differences(manifest, image):
                log(line)
        python_in_venv = make_kernel_venv(root, interpreter, site_dir, block_with_socket_patch=not use_unshare)
        env = kernel_env(root, write_kernelspec(root, python_in_venv), hide_gpu)
        notebook = prepared_notebook(bundle_dir, params, root / "notebook.ipynb")
        phases["venv and input folders"] = time.perf_counter() - start
        log(f"simulate: running {bundle_dir}/notebook offline ({network}) in the {environment}, {layout} input "
            f"layout, on {len(test_df)} rows")
        start = time.perf_counter()
        working = Path(params["OUTPUT_PATH"]).parent
        run_notebook(notebook, root / "executed.ipynb", working, env, use_unshare, timeout)
        total = time.perf_counter() - start
        executed = read_json(root / "executed.ipynb")
        cells = cell_seconds(executed)
        for line in found_inputs(executed):
            log(f"notebook: {line.replace(str(root), '<tmp>')}")
        report = read_json(working / REPORT_NAME)
        if report.get("failure"):
            failure = report["failure"]
            raise KitError(f"simulate: the notebook's prediction failed ({failure['error']}, at {failure['where']}); "
                           f"its last-resort guard wrote the fallback prediction for every row")
        if not Path(report["kaggle_kit_file"]).resolve().is_relative_to((root / "venv").resolve()):
            raise KitError(f"simulate: the notebook imported kaggle_kit from {report['kaggle_kit_file']}, "
                           f"not from the wheel it installed into {root / 'venv'}")
        submission = pd.read_csv(params["OUTPUT_PATH"], dtype={comp.schema.id_column: str})
        if output:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(params["OUTPUT_PATH"], output)
    problems = submission_problems(submission, sample, comp.schema.id_column)
    if problems:
        raise KitError(f"simulate: submission.csv is not valid: {problems[0]}")
    log("simulate: predicting the same rows in this process with `kit predict`'s code, to compare")
    diff = difference_from_kit_predict(comp, manifest, bundle_dir, data_dir, test_df, sample, submission,
                                       base_model)
    if diff > tolerance:
        raise KitError(f"simulate: the notebook's predictions differ from `kit predict` by up to {diff:.2e} "
                       f"(> {tolerance:g})")
    # test-time training steps do not grow with the test's rows: kept apart from inference, projected as measured
    steps = (report.get("test_time") or {}).get("fold_seconds", {})
    infer = {k: v - report["fold_load_seconds"].get(k, 0.0) - steps.get(k, 0.0)
             for k, v in report["fold_seconds"].items()}
    phases["find inputs"] = cells.get("find", 0.0)
    phases["bundle check"] = cells.get("verify", 0.0)
    phases["versions + pip freeze"] = cells.get("versions", 0.0)
    phases["install"] = cells.get("install", 0.0)
    phases["load (imports, data, models)"] = cells.get("predict", 0.0) - sum(infer.values()) - sum(steps.values())
    if steps:
        phases["test-time training"] = sum(steps.values())
    phases["notebook total"] = total
    # Model loading and setup do not grow with the test size; inference does, linearly in rows. The folds ran one
    # after another here; kaggle_kit.ship.projection says how this projection and kit bundle's differ.
    from kaggle_kit.ship.projection import notebook_seconds

    scale = comp.hidden_test_size / len(test_df)
    projected = notebook_seconds(total - sum(infer.values()), sum(infer.values()) / max(len(infer), 1) * scale,
                                 len(infer))
    return Simulation(Path(output) if output else None, len(submission), network, phases, infer, projected,
                      comp.hidden_test_size, diff, report["kaggle_kit_file"], layout, environment,
                      report.get("python", ""), report.get("versions", {}), fallback_line(report), steps)


def fallback_line(report: dict[str, Any]) -> str:
    """'3 of 2,700 test rows got the fallback prediction (...)' from the notebook's report, or '' for none."""
    record = report.get("fallback_rows") or {}
    return record.get("summary", "") if record.get("count") else ""


def image_list_mismatch(manifest: dict[str, Any], image: ImagePackages) -> list[str]:
    """The bundle was built against one image list and is simulated against another: the versions the bundle
    assumes against this simulation's list, and whether any difference matters."""
    from kaggle_kit.ship.image import explain_differences, version_differences

    made_for = manifest.get("image_packages", {})
    bundle_side = f"the bundle (built for {made_for.get('file')}, {made_for.get('date')})"
    # neither side saved the run's files (the training machine did): only the kind of release matters here
    differences = version_differences(manifest.get("assumed_versions", {}), image.versions, ours_saves=False)
    if not differences:
        return [f"simulate: {bundle_side} and this simulation's list {image.path.name} ({image.date}) agree on every "
                f"version the bundle assumes: the different list does not matter"]
    return explain_differences(differences, bundle_side, f"this simulation's list {image.path} ({image.date})",
                               "pass the bundle's list with --image-packages to simulate what it assumed, or "
                               "rebuild the bundle with this one")


def stand_in_differences(manifest: dict[str, Any], image: ImagePackages) -> list[str]:
    """The stand-in runs this machine's versions of what the image list names: where those differ from the image's
    in a way that matters, the simulation did not test what Kaggle will run."""
    from kaggle_kit.ship.image import installed_here, version_differences

    assumed = manifest.get("assumed_versions", {})
    differences = [d for d in version_differences(installed_here(assumed), image.versions) if d.matters]
    return [f"warning: the stand-in runs this machine's {d.name} {d.ours}, not the image list's {d.theirs} "
            f"({d.why}): `kit simulate --image` runs the image's versions" for d in differences]


def quick_check(comp, bundle_dir: Path, run_path: Path, rows: int = 8, log: Callable[[str], None] = print,
                image: ImagePackages | None = None) -> Simulation | None:
    """`simulate` on the first rows of the run's train.csv posing as a test set: what `kit bundle` runs by default."""
    from kaggle_kit.data.load import copy_row_files, read_csv
    from kaggle_kit.runs.folder import RunDir

    data = RunDir(run_path).data_dir()  # --data, data/<comp>/ or the embedded sample, as the manifest recorded
    train_csv = Path(data or "") / "train.csv"
    if not data or not train_csv.is_file():
        log(f"warning: skipped the offline check: the run's training data {train_csv} is not here; "
            f"run `kit simulate --bundle {bundle_dir} --data DIR`")
        return None
    train = read_csv(train_csv).head(rows)
    with tempfile.TemporaryDirectory(prefix="kit-check-") as tmp:
        train[comp.schema.test_columns()].to_csv(Path(tmp) / "test.csv", index=False)
        copy_row_files(comp, train, train_csv.parent, "train", Path(tmp), "test")
        sample = train[[comp.schema.id_column]].copy()
        for column in comp.schema.submission_columns()[1:]:
            sample[column] = 0.0
        sample.to_csv(Path(tmp) / "sample_submission.csv", index=False)
        manifest = read_json(Path(bundle_dir) / "dataset" / "manifest.json")
        attached = attached_base(manifest)
        base = RunDir(run_path).load_config().model if attached else None  # where training found it
        return simulate(bundle_dir, Path(tmp), log=log, image=image, base_model=Path(base) if base else None)


def print_simulation(sim: Simulation, log: Callable[[str], None] = print) -> None:
    log(f"simulate: valid submission, {sim.rows} rows, equal to `kit predict` (max |diff| {sim.max_abs_diff:.1e}); "
        f"{sim.layout} input layout, network blocked by {sim.network}")
    if sim.fallback:
        log(f"simulate: {sim.fallback}")
    log(f"simulate: the notebook ran in the {sim.environment}: Python {sim.python}, "
        + ", ".join(f"{name} {version}" for name, version in sim.versions.items()))
    for phase, seconds in sim.phases.items():
        log(f"  {phase:<32} {seconds:8.2f} s")
    for fold, seconds in sim.fold_seconds.items():
        log(f"  inference {fold:<22} {seconds:8.2f} s")
    hours = sim.projected_seconds / 3600
    verdict = "within" if hours < 9 else "OVER"
    log(f"projected runtime for the hidden test ({sim.hidden_rows:,} rows) at this machine's measured throughput: "
        f"{sim.projected_seconds:,.0f} s ({hours:.2f} h, {verdict} Kaggle's 9 h limit); measured here, folds one "
        f"after another, inference scaled linearly in rows: long for a GPU notebook, where kit bundle's projection "
        f"(assumed GPU throughput) is the nearer one")


if __name__ == "__main__":
    sys.exit(execute(*sys.argv[1:5]))
