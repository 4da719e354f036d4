"""Where a LoRA bundle's base model comes from on Kaggle, and how the notebook finds it there.

A LoRA run's folds hold adapters and the head only; the base model (9-32B, 18-64 GB) is already on Kaggle as a
Model or a public dataset. `kit bundle --base-model` says which:

- `kaggle-model:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION`: attached as a Kaggle Model (kernel-metadata.json
  `model_sources`, in the form the kaggle client validates),
- `dataset:OWNER/SLUG`: attached as a dataset (`dataset_sources`),
- `copy`: copied into the bundle's dataset (for small bases, or private ones).

The notebook does not trust folder names (models and datasets are mounted under layouts that changed in 2026):
it walks /kaggle/input for a config.json whose sha256 is the one the run recorded, then checks that folder's
weight files against the run's record (sizes and 256 chunks spread over each), the same check `kit predict`
makes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KitError

SLUG = r"[a-z0-9]+(?:[-_][a-z0-9]+)*"
MODEL_REF = re.compile(rf"^{SLUG}/[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9]+/[A-Za-z0-9][A-Za-z0-9._-]*/\d+$")
DATASET_REF = re.compile(rf"^{SLUG}/[a-z0-9]+(?:-[a-z0-9]+)*$")
COPY_FOLDER = "base"


@dataclass(frozen=True)
class BaseModelSource:
    kind: str  # kaggle-model, dataset or copy
    ref: str | None = None

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref}


def parse_source(spec: str) -> BaseModelSource:
    """`--base-model` as given, checked the way the kaggle client checks kernel-metadata.json sources."""
    kind, _, ref = spec.partition(":")
    if spec == "copy":
        return BaseModelSource("copy")
    if kind == "kaggle-model" and MODEL_REF.match(ref):
        return BaseModelSource("kaggle-model", ref)
    if kind == "dataset" and DATASET_REF.match(ref):
        return BaseModelSource("dataset", ref)
    raise KitError(f"--base-model {spec!r}: give kaggle-model:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION (e.g. "
                   f"kaggle-model:google/gemma-2/transformers/gemma-2-9b-it/2), dataset:OWNER/SLUG, or copy")


def find_base_model(input_root: str | Path, identity: dict[str, Any], max_depth: int = 8) -> Path:
    """The folder under `input_root` holding the recorded base model, found by its config.json's sha256 and then
    checked file by file; one error listing the config.json files seen when none matches."""
    import hashlib
    import os

    from kaggle_kit.models.identity import identity_problem

    seen, problems = [], []
    root = str(input_root)
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        if folder[len(root):].count(os.sep) >= max_depth:
            dirs[:] = []
        if "config.json" not in files:
            continue
        with open(os.path.join(folder, "config.json"), "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        seen.append(folder)
        if digest != identity["config_sha256"]:
            continue
        problem = identity_problem(Path(folder), identity)
        if problem is None:
            print(f"inputs: base model {identity.get('name')} at {folder}")
            return Path(folder)
        problems.append(problem)
    detail = f"; candidates refused: {'; '.join(problems)}" if problems else ""
    raise KitError(f"base model {identity.get('name')} ({identity.get('model_type')}) not found under {root}: no "
                   f"config.json with the recorded sha256 among {len(seen)} seen ({', '.join(seen[:8])}"
                   f"{', ...' if len(seen) > 8 else ''}){detail}; attach the model or dataset the bundle names")
