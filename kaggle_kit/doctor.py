"""`kit doctor`: what matters before a long run or an upload, as rows of one table.

Each row is ok, info, warn or fail:
- fail: something that breaks later, after work was done - a kaggle-kit requirement missing or outside its range
  here (a run dies on import), the Kaggle image's Python too old for the kit wheel (the notebook's install
  fails), the Kaggle image list unreadable (`kit bundle` fails), less than MIN_FREE_GIB free for a bundle, a
  competition plugin that fails to load (its commands fail).
- warn: something to act on before it bites, each with the command that fixes or checks it: an optional extra
  missing, transformers or tokenizers newer here than on the Kaggle image (the notebook must read what they
  save), less than LOW_FREE_GIB free.
- info / ok: nothing to do now: devices and the precision the kit would pick; no Kaggle credentials (only
  `kit data` and `kit submit` need them, and they say so); other version differences from the image, and
  packages the image lacks (`kit bundle` downloads their wheels).
`kit doctor` exits 1 when any row fails.
"""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from kaggle_kit.errors import KitError
from kaggle_kit.ship.image import SAVED_WITH  # one newer here than on the image may save what it cannot read

MIN_FREE_GIB = 1.0
LOW_FREE_GIB = 5.0
# What each optional extra enables, for the row's note.
EXTRAS = {
    "default-model": "kit train without --model (the embedded all-MiniLM-L6-v2)",
    "kaggle": "kit data and kit submit",
    "simulate": "kit simulate and kit bundle's offline check (else kit bundle --no-check)",
}
STATUSES = ("ok", "info", "warn", "fail")


@dataclass(frozen=True)
class Row:
    check: str
    status: str  # one of STATUSES
    value: str
    note: str = ""


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _kit_requirements() -> tuple[list[Requirement], dict[str, list[Requirement]], str]:
    """kaggle-kit's own requirements, those of each extra, and Requires-Python, from its installed metadata."""
    from importlib.metadata import metadata

    core: list[Requirement] = []
    extras: dict[str, list[Requirement]] = {name: [] for name in EXTRAS}
    for line in requires("kaggle-kit") or []:
        req = Requirement(line)
        if req.marker is None:
            core.append(req)
            continue
        for extra in extras:
            if req.marker.evaluate({"extra": extra}) and canonicalize_name(req.name) != "kaggle-kit":
                extras[extra].append(req)
    return core, extras, metadata("kaggle-kit").get("Requires-Python") or ""


def _minor(text: str) -> tuple[int, ...]:
    try:
        return Version(text).release[:2]
    except InvalidVersion:
        return ()


def python_row(image, requires_python: str) -> Row:
    here = platform.python_version()
    note = f"Kaggle image: Python {image.python} ({image.path.name}, {image.date})"
    if requires_python and not SpecifierSet(requires_python).contains(f"{image.python}.0"):
        return Row("python", "fail", here, f"{note}: the kaggle-kit wheel needs Python {requires_python}, so the "
                                           f"notebook's install would fail")
    return Row("python", "ok", here, note)


def package_rows(core: list[Requirement], image) -> list[Row]:
    rows = []
    for req in core:
        here = _installed(req.name)
        on_image = image.versions.get(canonicalize_name(req.name))
        if here is None:
            rows.append(Row(req.name, "fail", "not installed", f"kaggle-kit needs {req}: pip install -e ."))
            continue
        if not req.specifier.contains(here, prereleases=True):
            rows.append(Row(req.name, "fail", here, f"kaggle-kit needs {req}"))
        elif on_image is None:
            rows.append(Row(req.name, "info", here, "not on the Kaggle image: kit bundle downloads its wheel "
                                                   "(needs PyPI at bundle time)"))
        elif not req.specifier.contains(on_image, prereleases=True):
            rows.append(Row(req.name, "info", here, f"the image's {on_image} is outside {req.specifier}: kit bundle "
                                                   f"downloads a wheel (needs PyPI at bundle time)"))
        elif canonicalize_name(req.name) in SAVED_WITH and _minor(here) > _minor(on_image):
            rows.append(Row(req.name, "warn", here, f"newer than the Kaggle image's {on_image}, which must read the "
                                                   f"tokenizer and config this version saves: before submitting, "
                                                   f"check a bundle with the image's versions (kit simulate --bundle "
                                                   f"BUNDLE --data DATA --image), or train with them "
                                                   f"({image_pins_command(image)})"))
        elif _minor(here) != _minor(on_image):
            rows.append(Row(req.name, "info", here, f"Kaggle image has {on_image}"))
        else:
            rows.append(Row(req.name, "ok", here, f"Kaggle image has {on_image}"))
    return rows


def image_pins_command(image) -> str:
    """The pip command that installs the image's versions of the packages whose saved files the notebook reads."""
    pins = [f"{name}=={image.versions[name]}" for name in SAVED_WITH if name in image.versions]
    return "pip install " + " ".join(pins)


def extra_rows(extras: dict[str, list[Requirement]]) -> list[Row]:
    rows = []
    for extra, reqs in extras.items():
        missing = [str(r) for r in reqs if not (_installed(r.name) and r.specifier.contains(_installed(r.name),
                                                                                              prereleases=True))]
        if missing or not reqs:  # no reqs: the installed metadata predates the extra
            rows.append(Row(f"[{extra}]", "warn", "missing " + (", ".join(missing) or "(not in the metadata)"),
                            f"for {EXTRAS[extra]}: pip install 'kaggle-kit[{extra}]'"))
        else:
            rows.append(Row(f"[{extra}]", "ok", "installed", f"for {EXTRAS[extra]}"))
    return rows


def credentials_row() -> Row:
    from kaggle_kit.kaggle_api import credential_sources

    found = credential_sources()
    if found:
        return Row("kaggle credentials", "ok", "present", ", ".join(found))
    return Row("kaggle credentials", "info", "absent", "only kit data and kit submit need them (training on the "
               "embedded sample does not): `kaggle auth login`, or an API token from kaggle.com/settings/api in "
               "KAGGLE_API_TOKEN or ~/.kaggle/access_token (legacy: kaggle.json or KAGGLE_USERNAME + KAGGLE_KEY)")


def device_rows() -> list[Row]:
    import torch

    from kaggle_kit.device import amp_dtype

    if not torch.cuda.is_available():
        return [Row("device", "info", f"cpu ({torch.get_num_threads()} threads)",
                    "no CUDA GPU: fine for --preset quick and --mode frozen; --preset full wants a GPU"),
                Row("precision", "info", "fp32", "what --precision auto picks on CPU")]
    rows = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        rows.append(Row(f"cuda:{index}", "info", props.name, f"{props.total_memory / 2**30:.0f} GiB, compute "
                                                              f"capability {props.major}.{props.minor}"))
    dtype = amp_dtype("auto", torch.device("cuda"))
    picked = "bf16 autocast" if dtype == torch.bfloat16 else "fp16 autocast + grad scaler"
    rows.append(Row("precision", "info", picked, "what --precision auto picks on cuda:0 (Kaggle's T4 has no "
                                                 "native bf16: fp16 there)"))
    return rows


def disk_row(folder: Path) -> Row:
    """Free space where bundles and runs go (the nearest existing folder: --folder may not exist yet)."""
    folder = next(p for p in (folder.resolve(), *folder.resolve().parents) if p.exists())
    free = shutil.disk_usage(folder).free / 2**30
    value = f"{free:.1f} GiB free at {folder}"
    note = "a bundle holds every fold's weights (about 90 MB for MiniLM, 0.7 GB for deberta-v3-base) + wheels"
    if free < MIN_FREE_GIB:
        return Row("disk", "fail", value, f"under {MIN_FREE_GIB:g} GiB: {note}")
    if free < LOW_FREE_GIB:
        return Row("disk", "warn", value, f"under {LOW_FREE_GIB:g} GiB: {note}; free some, or write elsewhere "
                                          f"(kit bundle --out DIR, kit train --out DIR)")
    return Row("disk", "ok", value, note)


def plugin_rows() -> list[Row]:
    """The competition plugins: one ok row for those that load, a fail row per broken one (its commands fail)."""
    from kaggle_kit.registry import all_competitions, broken_plugins

    names = list(all_competitions())
    rows = [Row("plugins", "ok", f"{len(names)} loaded", ", ".join(names))]
    for name, plugin in broken_plugins().items():
        rows.append(Row(f"plugin {name}", "fail", "broken", f"{plugin.source}: {plugin.error}"))
    return rows


def run_checks(image_packages: str | Path | None = None, folder: Path = Path(".")) -> list[Row]:
    from kaggle_kit.ship.bundle import load_image_packages

    core, extras, requires_python = _kit_requirements()
    rows = []
    try:
        image = load_image_packages(image_packages)
    except KitError as err:
        image = None
        rows.append(Row("kaggle image list", "fail", "unreadable", f"kit bundle needs it: {err}"))
    if image is not None:
        rows.append(python_row(image, requires_python))
        rows += package_rows(core, image)
    rows += extra_rows(extras)
    rows.append(credentials_row())
    rows += device_rows()
    rows.append(disk_row(folder))
    rows += plugin_rows()
    return rows


def failed(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.status == "fail"]
