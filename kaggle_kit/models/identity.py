"""Which base model a run was trained on, recorded so an adapter-only run is never loaded onto another base.

Full sha256 of every weight file is taken once, when the run starts (about a minute for an 18 GB model); checking
at prediction time uses the cheap part of the record by default: the config's sha256, every weight file's size,
and the sha256 of its first and last MiB. A different model (another size, another fine-tune, a re-quantised
copy) changes the config, a size, or the tensor headers at the start of a safetensors file; a full re-hash of
18 GB on every notebook start would cost minutes of the 9 hours. `--verify-base full` re-hashes everything.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import sha256_file

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
SAMPLE_BYTES = 1 << 20


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and (
        p.suffix in WEIGHT_SUFFIXES or p.name.endswith((".safetensors.index.json", ".bin.index.json"))))


def sampled_sha256(path: Path) -> str:
    """sha256 of the first and last MiB (and the size): enough to tell two different checkpoints apart."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            handle.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def model_identity(folder: Path, full: bool = True) -> dict[str, Any]:
    """What identifies a local Hugging Face model folder: architecture, config hash, and each weight file."""
    folder = Path(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    files = {}
    for path in weight_files(folder):
        record = {"size": path.stat().st_size, "sampled_sha256": sampled_sha256(path)}
        if full:
            record["sha256"] = sha256_file(path)
        files[path.name] = record
    return {"name": folder.name, "architectures": config.get("architectures"), "model_type": config.get("model_type"),
            "config_sha256": sha256_file(config_path), "files": files}


def identity_problem(folder: Path, recorded: dict[str, Any], full: bool = False) -> str | None:
    """Why `folder` is not the recorded base model (naming the file), or None when it is."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return f"{folder}: no config.json"
    if sha256_file(folder / "config.json") != recorded["config_sha256"]:
        return f"{folder / 'config.json'} differs from the base model the run was trained on"
    for name, expected in recorded["files"].items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing (the run's base model has it)"
        if path.stat().st_size != expected["size"]:
            return f"{path} has {path.stat().st_size:,} bytes, the run's base model {expected['size']:,}"
        if sampled_sha256(path) != expected["sampled_sha256"]:
            return f"{path} differs from the run's base model (sha256 of its first and last MiB)"
        if full and "sha256" in expected and sha256_file(path) != expected["sha256"]:
            return f"{path} differs from the run's base model (sha256)"
    return None


def check_base_model(folder: Path, recorded: dict[str, Any], full: bool = False) -> None:
    problem = identity_problem(folder, recorded, full)
    if problem:
        raise KitError(f"base model refused: {problem}; give the base model the run was trained on "
                       f"({recorded.get('name')}, {recorded.get('model_type')})")
