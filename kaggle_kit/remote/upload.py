"""The dataset `kit remote train` uploads: the kit's wheel, the plugin's wheel, the wheels the Kaggle image lacks
(collected as `kit bundle` collects them), the model when it is copied, and a run to resume.

Its id and slug come from its content's sha256, so an upload whose content Kaggle already has is reused, not
uploaded again: the kit's wheel is built with a fixed timestamp, so the same checkout gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

import kaggle_kit
from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import default_mode, sha256_file, write_json
from kaggle_kit.ship.base_model import parse_source
from kaggle_kit.ship.bundle import (
    KIT_DISTRIBUTION,
    Downloader,
    build_kit_wheel,
    build_plugin_wheel,
    plugin_distribution,
    shareable_run_manifest,
    wheel_requirements,
)
from kaggle_kit.ship.image import ImagePackages, missing_from_image
from kaggle_kit.ship.kaggle_metadata import DATASET_METADATA, slugify, validate_dataset_metadata
from kaggle_kit.ship.kaggle_runtime import MANIFEST_NAME

WHEEL_EPOCH = 315532800  # 1980-01-01: the wheels' zip timestamps, fixed so the same code uploads the same bytes
MODEL_FOLDER = "model"
RESUME_FOLDER = "resume"
# What a resumed run needs back on Kaggle; its plots, reports and locks are rebuilt or irrelevant there.
RESUME_SKIP = (".lock", ".png")


@dataclass(frozen=True)
class Upload:
    path: Path
    dataset_id: str
    remote_id: str
    manifest: dict[str, Any]


def model_plan(model_path: Path, source: str) -> dict[str, Any]:
    """Where the notebook gets the model: `copy` (into the upload), `dataset:OWNER/SLUG` or
    `kaggle-model:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION` (attached); found there by its identity."""
    from kaggle_kit.models.identity import model_identity

    parsed = parse_source(source)
    return {"identity": model_identity(model_path, full=False), "source": parsed.record(), "local": str(model_path)}


def build_upload(comp: Competition, model_path: Path, model_source: str, out_root: Path, owner: str,
                 image: ImagePackages, downloader: Downloader, log: Callable[[str], None] = print,
                 resume_run: Path | None = None) -> Upload:
    """Write the upload into `out_root/<slug>/` (kept when it exists: same slug, same content)."""
    model = model_plan(model_path, model_source)
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload.", dir=out_root))
    staging.chmod(default_mode(directory=True))
    try:
        wheels = staging / "wheels"
        shipped = [build_kit_wheel(wheels, WHEEL_EPOCH)]
        plugin = plugin_distribution(comp)
        if plugin is not None:
            shipped.append(build_plugin_wheel(comp, plugin, wheels, WHEEL_EPOCH, image, downloader, log))
        requirements = [r for w in shipped for r in wheel_requirements(w)
                        if canonicalize_name(r.name) != KIT_DISTRIBUTION]
        missing = missing_from_image(list({str(r): r for r in requirements}.values()), image)
        if missing:
            log(f"not on the Kaggle image ({image.path.name}, {image.date}): {', '.join(map(str, missing))}; "
                f"downloading wheels for Python {image.python}")
            downloader(missing, wheels, image)
        if model["source"]["kind"] == "copy":
            log(f"copying the model {model_path} into the upload")
            shutil.copytree(model_path, staging / MODEL_FOLDER, ignore=shutil.ignore_patterns(".git", "*.lock"))
        if resume_run is not None:
            copy_run(resume_run, staging / RESUME_FOLDER)
        files = {p.relative_to(staging).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
                 for p in sorted(staging.rglob("*")) if p.is_file()}
        content = json.dumps({"files": files, "model": model["identity"]}, sort_keys=True)
        digest = hashlib.sha256(content.encode()).hexdigest()
        remote_id = f"{slugify(comp.name)}-remote-{digest[:16]}"
        slug = f"{slugify(comp.name)}-kit-remote-{digest[:10]}"
        manifest = {
            "bundle_id": remote_id,  # the key the notebook's find_inputs looks for
            "kind": "kit-remote",
            "competition": comp.name,
            "kit_version": kaggle_kit.__version__,
            "image_packages": {"file": image.path.name, "date": image.date, "python": image.python},
            "wheels": sorted(f"wheels/{p.name}" for p in wheels.glob("*.whl")),
            "downloaded": [str(r) for r in missing],
            "model": {k: v for k, v in model.items() if k != "local"},
            "resume": resume_run is not None,
            "files": files,
        }
        write_json(staging / MANIFEST_NAME, manifest)
        dataset_meta = {"id": f"{owner}/{slug}", "licenses": [{"name": "other"}], "title": slug[:50]}
        validate_dataset_metadata(dataset_meta, "kit remote upload")
        write_json(staging / DATASET_METADATA, dataset_meta)
        final = out_root / slug
        if final.exists():
            log(f"upload {slug}: the same content was prepared before; reusing it")
        else:
            os.replace(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return Upload(final, dataset_meta["id"], remote_id, manifest)


def copy_run(run_path: Path, dest: Path) -> None:
    """The files of a run that `kit train --resume` needs, without the training machine's identity."""
    from kaggle_kit.fileio import read_json
    from kaggle_kit.runs.folder import RunDir

    run = RunDir(run_path)
    if not run.config.is_file():
        raise KitError(f"--resume {run_path}: not a run folder (no run_config.json)")
    for path in sorted(run.path.rglob("*")):
        relative = path.relative_to(run.path)
        if not path.is_file() or path.name.endswith(RESUME_SKIP) or relative.parts[0] == "remote.json":
            continue
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if path == run.manifest:
            write_json(target, shareable_run_manifest(read_json(path)))
        else:
            shutil.copyfile(path, target)
