"""Typed training configuration: defaults < preset < --config file < command-line flags."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kaggle_kit.errors import KitError

SCHEDULERS = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


MODES = ("finetune", "frozen")


@dataclass
class TrainConfig:
    competition: str = "ell"
    mode: str = "finetune"
    data: str | None = None
    model: str | None = None
    folds: int = 4
    train_folds: list[int] | None = None
    epochs: int = 3
    max_len: int = 512
    batch_size: int = 8
    eval_batch_size: int = 32
    lr: float = 2e-5
    head_lr: float = 1e-3
    llrd: float = 1.0
    weight_decay: float = 0.01
    scheduler: str = "cosine"
    warmup: float = 0.1
    pooling: str = "mean"
    pooling_layers: int = 4
    loss: str | None = None
    backbone_dropout: float | None = 0.0
    head_dropout: float = 0.0
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    precision: str = "auto"
    grad_checkpointing: bool = False
    fgm_eps: float = 0.0
    awp_lr: float = 0.0
    awp_eps: float = 1e-3
    awp_start_epoch: int = 1
    eval_every: int = 1
    ema: float = 0.0
    seed: int = 42
    input_format: str | None = None
    max_train_samples: int | None = None
    device: str = "auto"
    threads: int | None = None
    preset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fold_list(self) -> list[int]:
        return sorted(self.train_folds) if self.train_folds is not None else list(range(self.folds))


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

# Generic presets; a competition may refine them in its plugin (Competition.presets).
PRESETS: dict[str, dict[str, Any]] = {
    # CPU smoke-and-sanity run: real fine-tuning, one fold, short sequences; see the competition plugin.
    "quick": {"folds": 4, "train_folds": [0], "epochs": 1, "max_len": 256, "batch_size": 8,
              "lr": 5e-5, "head_lr": 1e-3, "warmup": 0.05, "eval_every": 2, "precision": "fp32"},
    # The public reference recipe for a GPU (deberta-v3-base: CV 0.4546 on ELL).
    "full": {"folds": 4, "train_folds": None, "epochs": 5, "max_len": 512, "batch_size": 8,
             "eval_batch_size": 32, "lr": 2e-5, "head_lr": 5e-4, "llrd": 0.9, "weight_decay": 0.01,
             "scheduler": "cosine", "warmup": 0.0, "pooling": "attention", "backbone_dropout": 0.0,
             "fgm_eps": 1.0, "eval_every": 4, "precision": "auto", "max_grad_norm": 10.0},
}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a YAML/JSON/CLI value into the field's type, with a one-line error naming where it came from."""
    if value is None:
        return None
    kind = FIELDS[name].type
    try:
        if name == "train_folds":
            if isinstance(value, str):
                return [int(x) for x in value.split(",") if x.strip()]
            return [int(x) for x in value]
        if name == "extra":
            return dict(value)
        if "bool" in kind:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if "int" in kind and "float" not in kind:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if "float" in kind:
            return float(value)
        if "str" in kind:
            return str(value)
    except (TypeError, ValueError):
        raise KitError(f"{source}: {name} = {value!r} is not a valid {kind}") from None
    return value


def apply(cfg: TrainConfig, values: dict[str, Any], source: str) -> TrainConfig:
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise KitError(f"{source}: unknown setting {key!r} (known: {', '.join(FIELDS)})")
        setattr(cfg, name, _coerce(name, value, source))
    return cfg


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise KitError(f"--config {path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise KitError(f"--config {path}: cannot parse ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KitError(f"--config {path}: expected a mapping of setting: value")
    return data


def resolve(competition: str, competition_presets: dict[str, dict[str, Any]], preset: str | None,
            config_file: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Layer defaults, preset (generic then the competition's), config file and flags, then validate."""
    file_values = load_config_file(config_file) if config_file else {}
    preset = overrides.get("preset") or preset or file_values.get("preset")
    cfg = TrainConfig(competition=competition)
    if preset:
        if preset not in PRESETS and preset not in competition_presets:
            raise KitError(f"--preset {preset!r} is unknown; choose one of: {', '.join(sorted(PRESETS))}")
        apply(cfg, PRESETS.get(preset, {}), f"preset {preset}")
        apply(cfg, competition_presets.get(preset, {}), f"preset {preset} ({competition})")
        cfg.preset = preset
    apply(cfg, {k: v for k, v in file_values.items() if k != "preset"}, f"--config {config_file}")
    apply(cfg, {k: v for k, v in overrides.items() if v is not None and k != "preset"}, "command line")
    cfg.competition = competition
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    def bad(option: str, why: str) -> None:
        raise KitError(f"--{option.replace('_', '-')}: {why}")

    if cfg.folds < 2:
        bad("folds", f"must be at least 2 (got {cfg.folds}): K-fold CV needs a held-out fold")
    for fold in cfg.fold_list():
        if not 0 <= fold < cfg.folds:
            bad("train_folds", f"fold {fold} does not exist with --folds {cfg.folds} (use 0..{cfg.folds - 1})")
    if cfg.train_folds is not None and not cfg.train_folds:
        bad("train_folds", "is empty")
    for name in ("epochs", "batch_size", "eval_batch_size", "grad_accum", "eval_every", "pooling_layers"):
        if getattr(cfg, name) < 1:
            bad(name, f"must be at least 1 (got {getattr(cfg, name)})")
    if cfg.threads is not None and cfg.threads < 1:
        bad("threads", f"must be at least 1 (got {cfg.threads})")
    if cfg.max_len < 8:
        bad("max_len", f"must be at least 8 tokens (got {cfg.max_len})")
    if cfg.lr <= 0 or cfg.head_lr <= 0:
        bad("lr", "learning rates must be positive")
    if not 0 < cfg.llrd <= 1:
        bad("llrd", f"layer-wise decay must be in (0, 1] (got {cfg.llrd}); 1 means no decay")
    if cfg.scheduler not in SCHEDULERS:
        bad("scheduler", f"{cfg.scheduler!r} is unknown; choose one of: {', '.join(SCHEDULERS)}")
    if cfg.mode not in MODES:
        bad("mode", f"{cfg.mode!r} is unknown; choose one of: {', '.join(MODES)}")
    if cfg.precision not in PRECISIONS:
        bad("precision", f"{cfg.precision!r} is unknown; choose one of: {', '.join(PRECISIONS)}")
    if not 0 <= cfg.warmup < 1:
        bad("warmup", f"is a fraction of the steps in [0, 1) (got {cfg.warmup})")
    if not 0 <= cfg.ema < 1:
        bad("ema", f"is a decay in [0, 1), 0 = off (got {cfg.ema})")
    if cfg.max_train_samples is not None and cfg.max_train_samples < 2 * cfg.folds:
        bad("max_train_samples", f"needs at least 2 rows per fold (got {cfg.max_train_samples})")
