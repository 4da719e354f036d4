"""Which base model a run was trained on, recorded so an adapter-only run is never loaded onto another base.

The full sha256 of every weight file is taken once, when the run starts (about a minute for an 18 GB model) and
kept for audits. Checking at prediction time uses a cheap part of the record: the config's sha256, every weight
file's size, and the sha256 of 256 chunks of 64 KiB spread evenly over each file (16 MiB read per file, however
big). A fine-tune of the same base has the same config, sizes and safetensors header, so only the tensor bytes
tell it apart: any change to more than a few percent of a file's bytes (a full fine-tune, merged LoRA adapters on
every layer) lands in some chunk with near certainty. A full re-hash of 18 GB on every notebook start would cost
minutes of the 9 hours."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import sha256_file

SAMPLE_BYTES = 1 << 20
SPREAD_CHUNKS, SPREAD_CHUNK_BYTES = 256, 64 << 10
LOADED_FILES = (("model.safetensors.index.json", "model.safetensors"), ("pytorch_model.bin.index.json",
                                                                        "pytorch_model.bin"))


def weight_files(folder: Path) -> list[Path]:
    """The weight files transformers loads from `folder`: the shards an index names (with the index), else the
    single file; never the extra copies some repositories ship beside them (consolidated.safetensors, both .bin
    and .safetensors), which would double the parameter count and refuse a Kaggle copy without them."""
    folder = Path(folder)
    for index_name, single in LOADED_FILES:
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            return [index, *(folder / shard for shard in shards)]
        if (folder / single).is_file():
            return [folder / single]
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin"))


def spread_sha256(path: Path) -> str:
    """sha256 of the size and of SPREAD_CHUNKS chunks at evenly spaced offsets (first and last included)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(str(size).encode())
    step = max(size - SPREAD_CHUNK_BYTES, 0) / max(SPREAD_CHUNKS - 1, 1)
    with open(path, "rb") as handle:
        for offset in sorted({int(i * step) for i in range(SPREAD_CHUNKS)}):
            handle.seek(offset)
            digest.update(handle.read(SPREAD_CHUNK_BYTES))
    return digest.hexdigest()


def sampled_sha256(path: Path) -> str:
    """sha256 of the first and last MiB (and the size): what runs recorded before spread_sha256."""
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
        record = {"size": path.stat().st_size, "spread_sha256": spread_sha256(path)}
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
        if "spread_sha256" in expected and spread_sha256(path) != expected["spread_sha256"]:
            return f"{path} differs from the run's base model (sha256 of {SPREAD_CHUNKS} chunks spread over it)"
        if "sampled_sha256" in expected and sampled_sha256(path) != expected["sampled_sha256"]:  # older runs
            return f"{path} differs from the run's base model (sha256 of its first and last MiB)"
        if full and "sha256" in expected and sha256_file(path) != expected["sha256"]:
            return f"{path} differs from the run's base model (sha256)"
    return None


def check_base_model(folder: Path, recorded: dict[str, Any], full: bool = False) -> None:
    problem = identity_problem(folder, recorded, full)
    if problem:
        raise KitError(f"base model refused: {problem}; give the base model the run was trained on "
                       f"({recorded.get('name')}, {recorded.get('model_type')})")
