"""`kit bundle`: training runs -> a Kaggle dataset (wheels, models, manifest) plus an offline inference notebook.

The same runs always give the same bytes: files are copied as they are, everything generated has sorted keys
and a fixed timestamp (the newest run's finish time, or SOURCE_DATE_EPOCH), and the kaggle-kit wheel is built
with that timestamp. So a bundle's hash identifies it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import Parser
from importlib.metadata import Distribution, entry_points
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import kaggle_kit
from kaggle_kit.accelerators import DEFAULT_ACCELERATOR
from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import default_mode, read_json, sha256_file, write_json, write_text
from kaggle_kit.predict.test_time import TestTimeConfig
from kaggle_kit.runs.folder import RunDir, weight_file_problem
from kaggle_kit.ship.image import ImagePackages, load_image_packages, missing_from_image
from kaggle_kit.ship.kaggle_metadata import (
    DATASET_METADATA,
    KERNEL_METADATA,
    SLUG_PATTERN,
    accelerator,
    slugify,
    validate_dataset_metadata,
    validate_kernel_metadata,
)
from kaggle_kit.ship.kaggle_runtime import MANIFEST_NAME

# Every manylinux tag up to the image's glibc (Ubuntu 22.04: 2.35): pip does not widen an explicit `manylinux_2_X`
# tag to older ones, and some wheels carry one tag only (bitsandbytes: manylinux_2_24).
WHEEL_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 36)), "linux_x86_64")
SOURCE_FILES = ("kaggle_kit", "competitions", "pyproject.toml", "README.md", "LICENSE")
KIT_DISTRIBUTION = "kaggle-kit"
# Left out when a plugin's source folder is copied to build its wheel.
SOURCE_IGNORE = shutil.ignore_patterns(".git", ".venv", ".nox", ".tox", "__pycache__", "*.pyc", "*.egg-info", "build",
                                       "dist", ".pytest_cache", ".ruff_cache", "runs", "bundles")


# ---- what the Kaggle image lacks ------------------------------------------------------------------------------

def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The run-time requirements (no extras) declared in a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    reqs = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


Downloader = Callable[[list[Requirement], Path, ImagePackages], None]


def pip_download(requirements: list[Requirement], dest: Path, image: ImagePackages) -> None:
    """Binary wheels for the image's Python and Linux x86-64, from PyPI."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", image.python, "--dest", str(dest)]
    for platform_tag in WHEEL_PLATFORMS:
        cmd += ["--platform", platform_tag]
    result = subprocess.run(cmd + [str(r) for r in requirements], capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise KitError(f"could not download wheels for {', '.join(map(str, requirements))} ({last}); "
                       f"check the network, or list them in an --image-packages file if the image has them")


# ---- the kaggle-kit wheel -------------------------------------------------------------------------------------

def source_checkout() -> Path:
    root = Path(kaggle_kit.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise KitError(f"kit bundle builds the kaggle-kit wheel from a source checkout; none found at {root} "
                       f"(install kaggle-kit with `pip install -e .` from a clone)")
    return root


def build_kit_wheel(dest: Path, epoch: int) -> Path:
    """Build the kaggle-kit wheel from a clean copy of the checkout, with every zip timestamp set to `epoch`."""
    root = source_checkout()
    with tempfile.TemporaryDirectory(prefix="kit-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in SOURCE_FILES:
            if (root / name).is_dir():
                # The embedded data samples keep their own licence (CC BY-NC-SA): never inside an upload.
                shutil.copytree(root / name, src / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "samples"))
            elif (root / name).is_file():
                shutil.copy2(root / name, src / name)
        return build_wheel(src, dest, epoch, "kaggle-kit", root)


def build_wheel(src: Path, dest: Path, epoch: int, what: str, origin: Path, isolated_retry: bool = False) -> Path:
    """`pip wheel` of a source folder (a throwaway copy) into `dest`, zip timestamps at `epoch`.

    Without build isolation first: offline, with this environment's build backend. A plugin whose backend is not
    installed here (hatchling, ...) is retried with isolation when `isolated_retry`, which needs PyPI.
    """
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    out = src.parent / "dist"
    attempts = [["--no-build-isolation", "--no-index"]] + ([[]] if isolated_retry else [])
    last = "no output"
    for flags in attempts:
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps", *flags,
               str(src), "-w", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=src.parent)
        if result.returncode == 0:
            (wheel,) = out.glob("*.whl")
            dest.mkdir(parents=True, exist_ok=True)
            return Path(shutil.copy(wheel, dest / wheel.name))
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    raise KitError(f"building the {what} wheel from {origin} failed: {last}")


# ---- third-party plugins --------------------------------------------------------------------------------------

def plugin_distribution(comp: Competition) -> Distribution | None:
    """The installed distribution whose `kaggle_kit.competitions` entry point provides `comp`; None for the
    built-ins, which ship inside the kaggle-kit wheel."""
    from kaggle_kit.registry import ENTRY_POINT_GROUP

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry, "dist", None)
        if dist is None or canonicalize_name(dist.metadata["Name"]) == KIT_DISTRIBUTION:
            continue
        try:
            provided = entry.load()
        except Exception:  # another plugin's import error is that plugin's problem, not this bundle's
            continue
        if provided is comp or (entry.name == comp.name and getattr(provided, "name", None) == comp.name):
            return dist
    return None


def plugin_source(dist: Distribution) -> Path | None:
    """The local folder a plugin was installed from (`pip install PATH` or `-e PATH`), from its direct_url.json."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    info = json.loads(text)
    url = urlparse(info.get("url", ""))
    if "dir_info" not in info or url.scheme != "file":
        return None
    folder = Path(unquote(url.path))
    return folder if folder.is_dir() else None


def build_plugin_wheel(comp: Competition, dist: Distribution, dest: Path, epoch: int, image: ImagePackages,
                       downloader: Downloader, log: Callable[[str], None]) -> Path:
    """The plugin's own wheel in `dest`: built from the folder it was installed from, or downloaded for the
    image's Python when it came from an index."""
    name, version = dist.metadata["Name"], dist.version
    source = plugin_source(dist)
    if source is not None:
        log(f"plugin: {comp.name} comes from {name} {version}; building its wheel from {source}")
        with tempfile.TemporaryDirectory(prefix="kit-plugin-wheel-") as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(source, src, ignore=SOURCE_IGNORE)
            return build_wheel(src, dest, epoch, f"plugin {name}", source, isolated_retry=True)
    log(f"plugin: {comp.name} comes from {name} {version} (installed from an index); downloading its wheel")
    before = set(dest.glob("*.whl"))
    try:
        downloader([Requirement(f"{name}=={version}")], dest, image)
    except KitError as err:
        raise KitError(f"plugin {name} {version} provides {comp.name!r} but its wheel could not be fetched ({err}); "
                       f"install the plugin from its source folder (pip install PATH) so kit bundle can build it"
                       ) from None
    new = sorted(set(dest.glob("*.whl")) - before)
    if not new:
        raise KitError(f"plugin {name} {version}: no wheel was downloaded")
    return new[0]


# ---- metadata ------------------------------------------------------------------------------------------------

def kaggle_username() -> str | None:
    """The username from KAGGLE_USERNAME or kaggle.json (never the key), to name the dataset's owner."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    from kaggle_kit.kaggle_api import credentials_file

    try:
        return read_json(credentials_file()).get("username")
    except (OSError, ValueError, AttributeError):
        return None


# ---- the bundle -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BundleRun:
    """One training run going into a bundle, checked."""

    run: RunDir
    name: str
    folds: list[int]
    weight: float | list[float]  # one weight, or one per target (a `kit ensemble` file's)
    cv: dict[str, Any] | None


@dataclass(frozen=True)
class Bundle:
    path: Path
    slug: str
    owner: str
    wheels: list[str]
    downloaded: list[str]

    @property
    def dataset(self) -> Path:
        return self.path / "dataset"

    @property
    def notebook(self) -> Path:
        return self.path / "notebook"

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def check_runs(comp: Competition, run_paths: list[Path], weights: list | None,
               folds: list[list[int]] | None = None) -> list[BundleRun]:
    """The runs, checked, with their weights normalised (each target's column, for a `kit ensemble` file's
    per-target weights) and the folds they predict with (all finished ones, or an ensemble file's or --folds'),
    each fold's weight file checked against its record. With fewer folds than the run validated, the CV the bundle
    records is recomputed on those folds' OOF rows."""
    if not run_paths:
        raise KitError("--run: give at least one run folder")
    if weights is not None and len(weights) != len(run_paths):
        raise KitError(f"--weights: {len(weights)} weight(s) for {len(run_paths)} --run folder(s)")
    matrix = np.asarray(weights if weights is not None else [1.0] * len(run_paths), dtype=np.float64)
    matrix = matrix.reshape(len(run_paths), -1)
    if np.any(matrix < 0) or np.any(matrix.sum(axis=0) <= 0):
        raise KitError(f"--weights {','.join(map(str, np.ravel(weights)))}: weights must be >= 0 and not all 0")
    matrix = matrix / matrix.sum(axis=0)
    normalised = [float(row[0]) if matrix.shape[1] == 1 else [float(w) for w in row] for row in matrix]
    runs, names = [], set()
    for index, (path, weight) in enumerate(zip(run_paths, normalised, strict=True)):
        run = RunDir(Path(path))
        cfg = run.load_config()
        if cfg.competition != comp.name:
            raise KitError(f"--run {path}: a run of {cfg.competition!r}, not of {comp.name!r}")
        run_folds = run.select_folds(folds[index] if folds is not None else None)
        if not run_folds:
            raise KitError(f"--run {path}: no finished folds (folds/foldN.json) to bundle")
        for needed in (run.tokenizer, run.backbone / "config.json"):
            if not needed.exists():
                raise KitError(f"--run {path}: {needed.relative_to(run.path)} not found")
        name = slugify(run.path.resolve().name) or "run"
        while name in names:
            name += "-2"
        names.add(name)
        cv = read_json(run.cv) if run.cv.is_file() else None
        # cv.json holds the folds it was computed on: a resume that finished a fold but not the run leaves it stale
        cv_folds = set(cv.get("folds_trained") or run.cv_folds()) if cv is not None else set()
        if cv is not None and {f for f in run_folds if not run.is_full_train_fold(f)} != cv_folds:
            from kaggle_kit.train.pipeline import cv_on_folds

            cv = cv_on_folds(comp, run, run_folds)  # the CV these folds stand for, not the run's all-fold one
        runs.append(BundleRun(run, name, run_folds, weight, cv))
    return runs


def bundle_epoch(runs: list[BundleRun]) -> int:
    """The bundle's one timestamp: SOURCE_DATE_EPOCH, else the newest run's finish (or config) time."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    stamps = []
    for r in runs:
        finished = r.run.load_manifest().get("finished")
        if finished:
            stamps.append(int(dt.datetime.fromisoformat(finished).timestamp()))
        else:
            stamps.append(int(r.run.config.stat().st_mtime))
    return max(max(stamps), 315532800)  # zip timestamps start in 1980


def model_files(r: BundleRun) -> list[tuple[Path, str]]:
    """(source, path inside the dataset) for what inference needs from one run, in a fixed order."""
    base = f"models/{r.name}"
    files = [(r.run.config, f"{base}/run_config.json"),
             (r.run.backbone / "config.json", f"{base}/backbone/config.json")]
    if r.run.cv.is_file():
        files.append((r.run.cv, f"{base}/cv.json"))
    if r.run.postprocess.is_file():  # the plugin's post-processor state fitted on the run's OOF (QWK thresholds)
        files.append((r.run.postprocess, f"{base}/postprocess.json"))
    if r.run.fallback.is_file():  # what hidden-test rows that cannot be predicted get
        files.append((r.run.fallback, f"{base}/fallback.json"))
    if r.run.manifest.is_file():  # data sha256, git commit, seed, versions: where these weights came from
        files.append((r.run.manifest, f"{base}/run_manifest.json"))
    files += [(p, f"{base}/tokenizer/{p.name}") for p in sorted(r.run.tokenizer.iterdir()) if p.is_file()]
    if r.run.data.is_dir():  # the plugin's extra files (USPPPM's CPC titles), as the run found them
        files += [(p, f"{base}/data/{p.name}") for p in sorted(r.run.data.iterdir()) if p.is_file()]
    files += [(r.run.weights(f), f"{base}/fold{f}.safetensors") for f in r.folds]
    return files


MACHINE_KEYS = ("host", "pid", "pid_start")


def shareable_run_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The run's manifest without the training machine's name, process ids and boot id: they told the run folder
    whether a session still runs; in a dataset that may be made public they only identify the machine."""
    sessions = [{k: v for k, v in session.items() if k not in MACHINE_KEYS} for session in manifest.get("sessions", [])]
    return {**manifest, "sessions": sessions} if "sessions" in manifest else manifest


def runs_digest(runs: list[BundleRun]) -> str:
    digest = hashlib.sha256()
    for r in runs:
        digest.update(f"{r.name}:{r.weight!r}\n".encode())
        for src, dest in model_files(r):
            digest.update(f"{dest}:{sha256_file(src)}\n".encode())
    return digest.hexdigest()


def build_bundle(comp: Competition, run_paths: list[Path], out_root: Path, weights: list[float] | None = None,
                 slug: str | None = None, owner: str | None = None, license_name: str = "CC0-1.0",
                 accelerator_name: str = DEFAULT_ACCELERATOR, image: ImagePackages | None = None,
                 downloader: Downloader = pip_download, log: Callable[[str], None] = print,
                 ensemble_file: Path | None = None, base_model: str | None = None, force: bool = False,
                 assume_tflops: float | None = None, merge: bool = False,
                 quantize: str | None = None, run_folds: list[list[int]] | None = None,
                 test_time: TestTimeConfig | None = None) -> Bundle:
    """Write `out_root/<slug>/dataset/` and `out_root/<slug>/notebook/`, replacing an older bundle of that slug.

    Everything is written to a staging folder first, so a failure never leaves half a bundle under the slug.
    A bundle whose notebook is projected past Kaggle's time limit is refused before anything is written, unless
    `force`. `run_folds` (--folds) names the folds of each run to bundle instead of every finished one.
    `test_time` (--ttt) turns on the notebook's test-time training stage: recorded in the manifest, projected.
    """
    if slug is not None and not (SLUG_PATTERN.match(slug) and 6 <= len(slug) <= 40):
        raise KitError(f"--slug {slug!r}: use 6-40 lowercase letters, digits and single hyphens "
                       f"(the notebook's slug adds '-inference')")
    machine = accelerator(accelerator_name)
    image = image or load_image_packages()
    folds = run_folds
    if ensemble_file is not None and run_folds is not None:
        raise KitError("--folds: an ensemble file names its own folds; drop --folds")
    if ensemble_file is not None:
        run_paths, weights, folds, ensemble = ensemble_from_file(comp, ensemble_file, log)
    else:
        weights, ensemble = ensemble_weights(comp, run_paths, weights, log)
    runs = check_runs(comp, run_paths, weights, folds)
    for r in runs:
        if r.cv is not None:
            log(f"{r.name}: folds {','.join(map(str, r.folds))}, CV {r.cv['metric']} {r.cv['score']:.4f} over "
                f"{r.cv.get('n_oof')} OOF rows of folds {','.join(map(str, r.cv.get('folds_trained') or []))}")
    base = base_model_plan(runs, base_model)
    if merge:
        if base is None:
            raise KitError("--merge: no run in this bundle holds LoRA adapters")
        quantised = [r.name for r, cfg in ((r, r.run.load_config()) for r in runs)
                     if cfg.load_in_4bit or cfg.load_in_8bit]
        if quantised:
            raise KitError(f"--merge: {', '.join(quantised)} hold their base in 4/8 bits; merging re-quantises the "
                           f"weights and changes the predictions: bundle without --merge")
        base["merge"] = True
    if test_time is not None:
        test_time.check_quantize(quantize)
    test_time = test_time if test_time is not None and test_time.enabled else None
    projected = projected_time(comp, runs, machine.name, assume_tflops, force, log, test_time)
    quantized = quantize_report(comp, runs, quantize, log) if quantize else None
    slug = slug or f"{slugify(comp.name)}-kit-{runs_digest(runs)[:10]}"
    owner = owner or kaggle_username()
    if not owner:
        raise KitError("--owner: no Kaggle username given and none found in KAGGLE_USERNAME or ~/.kaggle/kaggle.json")
    dataset_meta = {"id": f"{owner}/{slug}", "licenses": [{"name": license_name}],
                    "title": f"{slug} bundle" if len(slug) <= 43 else slug}
    validate_dataset_metadata(dataset_meta, "--slug/--owner/--license")
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{slug}.", dir=out_root))
    staging.chmod(default_mode(directory=True))
    try:
        manifest = write_dataset(staging / "dataset", comp, runs, image, downloader, log, ensemble, base, projected,
                                 quantized, test_time)
        write_json(staging / "dataset" / DATASET_METADATA, dataset_meta)
        write_notebook_folder(staging / "notebook", comp, manifest, owner, slug, machine.name)
        final = out_root / slug
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return Bundle(final, slug, owner, manifest["wheels"], manifest["downloaded"])


def ensemble_from_file(comp: Competition, path: Path, log: Callable[[str], None]
                       ) -> tuple[list[Path], list, list[list[int]], dict[str, Any]]:
    """A `kit ensemble` file's runs, per-target weights (one column per target, or one for all), folds, and the
    summary the manifest keeps (its OOF scores and the post-processing fitted on the blended OOF)."""
    from kaggle_kit.predict.ensemble_file import ALL_TARGETS, load_ensemble, read_ensemble_file

    data = read_ensemble_file(path)
    run_paths, matrix, folds = load_ensemble(path, comp)
    weights = matrix[:, :1].tolist() if ALL_TARGETS in data["weights"] else matrix.tolist()
    oof = data.get("oof", {})
    summary = {"fitted": True, "source": f"kit ensemble file {Path(path).name}", "metric": data.get("metric"),
               "n_oof_rows": data.get("fit", {}).get("n_oof_rows"), "blend_oof_score": oof.get("blend"),
               "blend_held_out_estimate": oof.get("blend_held_out_estimate"),
               "run_oof_scores": {name: r.get("score") for name, r in oof.get("runs", {}).items()},
               "postprocess": data.get("postprocess")}
    log(f"ensemble from {path}: {len(run_paths)} runs, OOF {summary['metric']} {summary['blend_oof_score']:.4f} "
        f"(held out {summary['blend_held_out_estimate']:.4f})")
    return run_paths, weights, folds, summary


def ensemble_weights(comp: Competition, run_paths: list[Path], weights: list[float] | None,
                     log: Callable[[str], None]) -> tuple[list[float] | None, dict[str, Any] | None]:
    """Several runs without --weights: weights fitted on their OOF predictions. With --weights, the same
    report scores them when the training data is still there; it is information then, not a requirement."""
    if len(run_paths) < 2:
        return weights, None
    from kaggle_kit.predict.ensemble import ensemble_report

    try:
        report = ensemble_report(comp, run_paths, weights)
    except KitError as err:
        if weights is None or comp.postprocessor is not None:
            fit = "ensemble weights" if weights is None else f"{comp.postprocessor.name} on the blended OOF"
            raise KitError(f"cannot fit {fit} ({err}){'; pass --weights to give them' * (weights is None)}") from None
        log(f"ensemble: using the given --weights; OOF scores not available ({err})")
        return weights, None
    log(f"ensemble ({'fitted on OOF' if report.fitted else 'given'}):\n{report.table()}")
    summary = {"fitted": report.fitted, "metric": report.metric, "n_oof_rows": report.n_rows,
               "blend_oof_score": report.blend_score,
               "run_oof_scores": dict(zip(report.runs, report.run_scores, strict=True)),
               "postprocess": report.postprocess, "blend_oof_score_after_postprocess": report.blend_score_after}
    return [float(w) for w in report.weights], summary


def quantize_report(comp: Competition, runs: list[BundleRun], mode: str, log: Callable[[str], None]) -> dict:
    """`--quantize int8`: what the notebook does on a CPU-only session, with each run's OOF score in fp32 and in
    int8 measured here, so the cost of the speed is known before submitting."""
    from kaggle_kit.predict.quantize import check_mode, oof_effect

    check_mode(mode)
    effects = {r.name: oof_effect(comp, r.run.path, mode, log_line=log).to_dict() for r in runs}
    return {"mode": mode, "applies_to": "cpu", "runs": effects}


def projected_time(comp: Competition, runs: list[BundleRun], accelerator_name: str, assume_tflops: float | None,
                   force: bool, log: Callable[[str], None], test_time: TestTimeConfig | None = None) -> dict[str, Any]:
    """The notebook's projected time on `accelerator_name` for the hidden test's rows (printed, recorded in the
    manifest); past the notebook's deadline budget it is refused unless `force`."""
    from kaggle_kit.accelerators import ACCELERATORS
    from kaggle_kit.ship.kaggle_runtime import DEFAULT_BUDGET_HOURS
    from kaggle_kit.ship.projection import bundle_run_cost, project

    if accelerator_name not in ACCELERATORS or ACCELERATORS[accelerator_name].tflops is None:
        return {"skipped": f"no throughput assumption for {accelerator_name}"}
    costs = [bundle_run_cost(r.name, r.run, len(r.folds), accelerator_name, fold=r.folds[0], test_time=test_time,
                             hidden_rows=comp.hidden_test_size) for r in runs]
    result = project(costs, comp.hidden_test_size, accelerator_name, assume_tflops)
    for cost in costs:
        log(f"projection: {cost.name}: {cost.parameters / 1e6:,.0f}M parameters ({cost.weights_format}), "
            f"{cost.folds} fold(s), {cost.tokens_per_row:.0f} tokens per row -> "
            f"{result.per_run[cost.name] / 60:.1f} min; {result.layout[cost.name]}")
    log(f"projection: {result.hours:.2f} h for {comp.hidden_test_size:,} hidden test rows on {accelerator_name} "
        f"(budget {DEFAULT_BUDGET_HOURS} h of Kaggle's 9; {result.assumptions})")
    too_long = result.hours > DEFAULT_BUDGET_HOURS
    if too_long and not force:
        raise KitError(f"the notebook is projected to run {result.hours:.1f} h on {accelerator_name}, past the "
                       f"{DEFAULT_BUDGET_HOURS} h budget: drop folds or runs, hold weights in 4 bits, shorten max_len, "
                       f"or pass --force (e.g. when --assume-tflops is too pessimistic for your model)")
    if any("DOES NOT FIT" in layout for layout in result.layout.values()) and not force:
        raise KitError(f"a model does not fit {accelerator_name}'s GPU memory: "
                       f"{'; '.join(f'{k}: {v}' for k, v in result.layout.items())}; pass --force to bundle anyway")
    return {"accelerator": accelerator_name, "hours": round(result.hours, 3), "rows": comp.hidden_test_size,
            "per_run_seconds": {k: round(v, 1) for k, v in result.per_run.items()}, "layout": result.layout,
            "assumptions": result.assumptions, "forced": bool(too_long and force)}


def base_model_plan(runs: list[BundleRun], spec: str | None) -> dict[str, Any] | None:
    """The LoRA runs' base model: its recorded identity and where the notebook gets it (`--base-model`)."""
    from kaggle_kit.ship.base_model import COPY_FOLDER, parse_source

    identities = {}
    for r in runs:
        cfg = r.run.load_config()
        if cfg.lora_r:
            identities[json.dumps(cfg.base_model, sort_keys=True)] = (cfg.base_model, cfg.model)
    if not identities:
        if spec is not None:
            raise KitError("--base-model: no run in this bundle holds LoRA adapters (their folds hold whole models)")
        return None
    if spec is None:
        raise KitError("the runs hold LoRA adapters, not whole models: say where the notebook gets their base model "
                       "with --base-model kaggle-model:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION, dataset:OWNER/SLUG "
                       "or copy")
    if len(identities) > 1:
        raise KitError(f"the runs' LoRA adapters belong to {len(identities)} different base models: bundle each "
                       f"base's runs separately")
    (identity, recorded_path), = identities.values()
    source = parse_source(spec)
    plan = {"identity": identity, "source": source.record()}
    if source.kind == "copy":
        from kaggle_kit.models.identity import check_base_model

        folder = Path(recorded_path or "")
        if not folder.is_dir():
            raise KitError(f"--base-model copy: the base model is not at {folder} any more (where training found it)")
        check_base_model(folder, identity)
        plan.update(path=f"{COPY_FOLDER}/{slugify(identity.get('name') or 'model')}", folder=str(folder))
    return plan


def llm_requirements(runs: list[BundleRun]) -> list[Requirement]:
    """What the notebook needs beyond the kit's own requirements: peft for LoRA runs, bitsandbytes for runs trained
    on a 4/8-bit base (the kaggle-kit[llm] extra; Kaggle's image has peft but not bitsandbytes)."""
    configs = [r.run.load_config() for r in runs]
    needed = []
    if any(c.lora_r for c in configs):
        needed.append(Requirement("peft>=0.13"))
    if any(c.load_in_4bit or c.load_in_8bit for c in configs):
        needed.append(Requirement("bitsandbytes>=0.45"))
    return needed


def write_dataset(dataset: Path, comp: Competition, runs: list[BundleRun], image: ImagePackages,
                  downloader: Downloader, log: Callable[[str], None],
                  ensemble: dict[str, Any] | None = None, base: dict[str, Any] | None = None,
                  projected: dict[str, Any] | None = None, quantize: dict[str, Any] | None = None,
                  test_time: TestTimeConfig | None = None) -> dict[str, Any]:
    """models/, data/ (plugin extra files), wheels/, a copied base model, and manifest.json; returns the manifest."""
    epoch = bundle_epoch(runs)
    for r in runs:
        for src, dest in model_files(r):
            (dataset / dest).parent.mkdir(parents=True, exist_ok=True)
            if src == r.run.manifest:
                write_json(dataset / dest, shareable_run_manifest(read_json(src)))
            else:
                shutil.copyfile(src, dataset / dest)
        if not r.run.fallback.is_file():  # an older run: the notebook still needs one, computed here
            from kaggle_kit.predict.fallback import run_fallback

            values, source = run_fallback(comp, r.run)
            log(f"{r.name}: no fallback.json (trained before runs recorded one); the bundle's is {source}")
            write_json(dataset / f"models/{r.name}/fallback.json",
                       {"prediction": dict(zip(comp.schema.output_columns, map(float, values), strict=True)),
                        "source": source})
    if base is not None and base.get("folder"):
        log(f"copying the base model {base['folder']} into the bundle ({base['path']})")
        shutil.copytree(base.pop("folder"), dataset / base["path"])
    check_extra_files(comp, runs)
    wheels = dataset / "wheels"
    shipped = [build_kit_wheel(wheels, epoch)]
    plugin = plugin_distribution(comp)
    if plugin is not None:
        shipped.append(build_plugin_wheel(comp, plugin, wheels, epoch, image, downloader, log))
    requirements = [r for w in shipped for r in wheel_requirements(w) if canonicalize_name(r.name) != KIT_DISTRIBUTION]
    requirements += llm_requirements(runs)
    requirements = list({str(r): r for r in requirements}.values())
    missing = missing_from_image(requirements, image)
    if missing:
        log(f"not on the Kaggle image ({image.path.name}, {image.date}): {', '.join(map(str, missing))}; "
            f"downloading wheels for Python {image.python}")
        downloader(missing, wheels, image)
    missing_names = {canonicalize_name(r.name) for r in missing}
    assumed = {canonicalize_name(r.name): image.versions[canonicalize_name(r.name)] for r in requirements
               if canonicalize_name(r.name) not in missing_names}
    from kaggle_kit.ship.image import explain_differences, installed_here, version_differences

    for line in explain_differences(version_differences(installed_here(assumed), assumed), "this machine",
                                    f"the Kaggle image list the bundle assumes ({image.path.name}, {image.date})",
                                    "check the bundle with the image's versions: kit simulate --bundle BUNDLE "
                                    "--data DATA --image"):
        log(line)
    manifest = {
        "bundle_format": 2,
        "competition": comp.name,
        "kaggle_competition": comp.kaggle_slug,
        "created": dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(),
        "kit_version": kaggle_kit.__version__,
        "image_packages": {"file": image.path.name, "date": image.date, "python": image.python,
                           "source": image.header.get("source"), "gpu_torch": image.gpu_torch},
        "assumed_versions": dict(sorted(assumed.items())),
        "plugin": ({"distribution": plugin.metadata["Name"], "version": plugin.version,
                    "wheel": f"wheels/{shipped[-1].name}"} if plugin is not None else None),
        "runs": [{"name": r.name, "path": f"models/{r.name}", "folds": r.folds, "weight": r.weight,
                  "cv_score": r.cv.get("score") if r.cv else None,
                  "cv_folds": r.cv.get("folds_trained") if r.cv else None,
                  "metric": r.cv.get("metric") if r.cv else comp.metric.name} for r in runs],
        "ensemble": ensemble,
        "base_model": base,
        "projection": projected,
        "quantize": quantize,
        "test_time": test_time.model_dump() if test_time is not None else None,
        "wheels": sorted(f"wheels/{p.name}" for p in wheels.glob("*.whl")),
        "downloaded": [str(r) for r in missing],
        "files": {p.relative_to(dataset).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
                  for p in sorted(dataset.rglob("*")) if p.is_file()},
    }
    manifest["bundle_id"] = bundle_id(manifest)
    write_json(dataset / MANIFEST_NAME, manifest)
    return manifest


def bundle_id(manifest: dict[str, Any]) -> str:
    """`<competition>-<16 hex>` from every file's sha256 and the runs' weights: the notebook finds its bundle by it,
    so a renamed or forked dataset still matches and an older bundle never does."""
    content = json.dumps({"files": manifest["files"], "runs": manifest["runs"]}, sort_keys=True)
    return f"{manifest['competition']}-{hashlib.sha256(content.encode()).hexdigest()[:16]}"


def write_notebook_folder(folder: Path, comp: Competition, manifest: dict[str, Any], owner: str, slug: str,
                          accelerator_name: str = DEFAULT_ACCELERATOR) -> None:
    """inference.ipynb and its kernel-metadata.json (validated: internet written as off, the accelerator's
    machine_shape as the kaggle client reads it)."""
    from kaggle_kit.ship.notebook import NOTEBOOK_NAME, build_notebook, notebook_text

    machine = accelerator(accelerator_name)
    nb = build_notebook(comp.title, comp.kaggle_slug, slug, manifest["bundle_id"], comp.schema.test_columns(),
                        comp.schema.submission_columns(), manifest["wheels"], manifest["runs"])
    write_text(folder / NOTEBOOK_NAME, notebook_text(nb))
    kernel_slug = f"{slug}-inference"
    kernel_meta = {
        "id": f"{owner}/{kernel_slug}", "title": kernel_slug, "code_file": NOTEBOOK_NAME,
        "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": machine.enable_gpu,
        "enable_tpu": False, "enable_internet": False, "dataset_sources": [f"{owner}/{slug}"],
        "competition_sources": [comp.kaggle_slug], "kernel_sources": [], "model_sources": [],
    }
    if machine.machine_shape:
        kernel_meta["machine_shape"] = machine.machine_shape
    source = (manifest.get("base_model") or {}).get("source") or {}
    if source.get("kind") == "kaggle-model":
        kernel_meta["model_sources"] = [source["ref"]]
    elif source.get("kind") == "dataset":
        kernel_meta["dataset_sources"].append(source["ref"])
    write_json(folder / KERNEL_METADATA, kernel_meta)
    validate_kernel_metadata(kernel_meta, folder)


def check_extra_files(comp: Competition, runs: list[BundleRun]) -> None:
    """Each run must carry the plugin's extra files: the notebook reads them from the run's folder in the bundle."""
    for r in runs:
        for extra in comp.extra_files:
            if not r.run.extra_file(extra.name).is_file():
                raise KitError(f"--run {r.run.path}: has no {r.run.extra_file(extra.name).relative_to(r.run.path)}; "
                               f"it was trained before runs carried their extra files: retrain it to bundle it")


def check_bundled_folds(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Every fold the bundle's manifest lists, against the size and sha256 recorded at bundling: what the notebook's
    `verify_files` checks on Kaggle, checked here before a notebook is run."""
    dataset = bundle_dir / "dataset"
    files = manifest.get("files") or {}
    for r in manifest.get("runs") or []:
        for fold in r["folds"]:
            name = f"{r['path']}/fold{fold}.safetensors"
            problem = weight_file_problem(dataset / name, files.get(name), "bundling")
            if problem:
                raise KitError(f"{dataset / name}: fold {fold} of {r['name']} is listed in the bundle's manifest but "
                               f"{problem} (restore it, or bundle again with kit bundle)")


def load_bundle_manifest(bundle_dir: Path) -> dict[str, Any]:
    path = bundle_dir / "dataset" / MANIFEST_NAME
    if not path.is_file():
        raise KitError(f"--bundle {bundle_dir}: no dataset/{MANIFEST_NAME} (make one with `kit bundle`)")
    return read_json(path)
