"""dataset-metadata.json and kernel-metadata.json as Kaggle accepts them: license names, accelerators, slugs.

Sources (checked 2026-11): the license names are the list in Kaggle's kaggle-cli docs/datasets_metadata.md;
the accelerators are kaggle_kit/accelerators.py's table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kaggle_kit.accelerators import ACCELERATORS, SHAPES, Accelerator
from kaggle_kit.errors import KitError

DATASET_METADATA = "dataset-metadata.json"
KERNEL_METADATA = "kernel-metadata.json"
# Exactly the names Kaggle documents for `licenses[0].name` ("MIT" is not one of them).
LICENSES = (
    "CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
    "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0", "CC-BY-3.0-IGO",
    "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0", "CDLA-Sharing-1.0", "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0", "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0",
    "GPL-3.0",
)
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
OWNER_PATTERN = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")


def accelerator(name: str) -> Accelerator:
    """The --accelerator choice by name; P100 and unknown names are one-line errors."""
    choice = ACCELERATORS.get(name.lower().replace("_", "-"))
    if choice is None:
        raise KitError(f"--accelerator {name!r}: choose one of {', '.join(ACCELERATORS)}")
    if choice.retired:
        raise KitError(f"--accelerator {name}: {choice.retired}")
    return choice


def validate_dataset_metadata(meta: dict[str, Any], where: str = DATASET_METADATA) -> None:
    """The checks Kaggle applies when creating a dataset, as one-line errors before any upload."""
    title = meta.get("title")
    if not isinstance(title, str) or not 6 <= len(title) <= 50:
        raise KitError(f"{where}: title {title!r} must be 6-50 characters")
    check_ref(meta.get("id"), where, "id", 6)
    licenses = meta.get("licenses")
    if not isinstance(licenses, list) or len(licenses) != 1 or not isinstance(licenses[0], dict):
        raise KitError(f"{where}: licenses must hold exactly one license, e.g. [{{\"name\": \"CC0-1.0\"}}]")
    if licenses[0].get("name") not in LICENSES:
        raise KitError(f"{where}: license {licenses[0].get('name')!r} is not one of the license names Kaggle "
                       f"documents ({', '.join(LICENSES)})")


def validate_kernel_metadata(meta: dict[str, Any], folder: Path, where: str = KERNEL_METADATA) -> None:
    """What `kernels push` needs, plus the settings a code competition needs (internet explicitly off)."""
    slug = check_ref(meta.get("id"), where, "id", 5)
    title = meta.get("title")
    if not isinstance(title, str) or len(title) < 5 or slugify(title) != slug:
        raise KitError(f"{where}: title {title!r} must be at least 5 characters and slugify to the id's {slug!r}")
    for key, expected in (("language", "python"), ("kernel_type", "notebook")):
        if meta.get(key) != expected:
            raise KitError(f"{where}: {key} must be {expected!r}, not {meta.get(key)!r}")
    if meta.get("enable_internet") is not False:
        raise KitError(f"{where}: enable_internet must be written as false (Kaggle turns the internet on when the "
                       f"field is missing, and code competitions reject such notebooks)")
    if not isinstance(meta.get("enable_gpu"), bool):
        raise KitError(f"{where}: enable_gpu must be true or false")
    check_machine_shape(meta, where)
    code_file = meta.get("code_file")
    if not code_file or not (folder / code_file).is_file():
        raise KitError(f"{where}: code_file {code_file!r} not found in {folder}")
    for key in ("dataset_sources", "competition_sources"):
        sources = meta.get(key)
        if not isinstance(sources, list) or not sources:
            raise KitError(f"{where}: {key} must be a non-empty list")
    for source in meta["dataset_sources"]:
        check_ref(source, where, "dataset_sources", 6)


def check_machine_shape(meta: dict[str, Any], where: str) -> None:
    """machine_shape is one Kaggle documents (not the retired P100) and agrees with enable_gpu."""
    shape = meta.get("machine_shape")
    if shape in (None, ""):
        if meta.get("enable_gpu"):
            raise KitError(f"{where}: enable_gpu is true but machine_shape is missing: without it Kaggle may pick "
                           f"any GPU; write \"machine_shape\": \"NvidiaTeslaT4\" (kit bundle --accelerator t4x2)")
        return
    choice = SHAPES.get(shape)
    if choice is None:
        raise KitError(f"{where}: machine_shape {shape!r} is not one Kaggle documents "
                       f"({', '.join(SHAPES)})")
    if choice.retired:
        raise KitError(f"{where}: machine_shape {shape}: {choice.retired}")
    if meta.get("enable_gpu") is not choice.enable_gpu:
        raise KitError(f"{where}: machine_shape {shape} needs enable_gpu {str(choice.enable_gpu).lower()}")


def check_ref(ref: Any, where: str, field: str, min_slug: int) -> str:
    owner, sep, slug = ref.partition("/") if isinstance(ref, str) else ("", "", "")
    if not sep or not OWNER_PATTERN.match(owner):
        raise KitError(f"{where}: {field} {ref!r} must be `owner/slug` with a lowercase Kaggle username as owner")
    if not SLUG_PATTERN.match(slug) or not min_slug <= len(slug) <= 50:
        raise KitError(f"{where}: {field} {ref!r}: slug must be {min_slug}-50 lowercase letters, digits and "
                       f"single hyphens")
    return slug


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
