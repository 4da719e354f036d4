"""Checks that need more than the settings alone - the plugin, the model, the data, the output folder - run before
the first byte of a run is written, and the settings a run records, made concrete.

A run folder exists only for a run that started: everything that can be known to fail is refused here, as one
line naming the option or file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kaggle_kit.competition import Competition
from kaggle_kit.config import TrainConfig
from kaggle_kit.data.load import SAMPLE
from kaggle_kit.device import check_gpus_exist, resolved_precision
from kaggle_kit.errors import KitError
from kaggle_kit.models.label_tokens import DEFAULT_LABEL_CUE
from kaggle_kit.tasks.losses import check_loss_trains, get_loss

log = logging.getLogger(__name__)

# Below this many validation rows per fold a CV score is mostly noise: said loudly, not refused.
FEW_VALIDATION_ROWS = 30
LAYER_POOLINGS = ("weighted-layer", "concat-last4")


def resolved_config(cfg: TrainConfig, comp: Competition, data_dir: Path | str, device: torch.device,
                    backbone_config, model_path: Path) -> TrainConfig:
    """The settings as the run records them: nothing left for a plugin default or `auto` to decide later."""
    updates = decoder_settings(cfg, backbone_config) | adapter_settings(cfg, model_path, device)
    cfg = cfg.model_copy(update=updates)
    loss = cfg.loss or comp.default_loss
    check_loss_trains(loss, get_loss(loss, comp.losses), comp.schema.targets, comp.name)
    input_format = cfg.input_format or comp.input_formats[0]
    if input_format not in comp.input_formats:
        raise KitError(f"--input-format {input_format!r} is unknown for {comp.name}; "
                       f"choose one of: {', '.join(comp.input_formats)}")
    if cfg.mode == "frozen":
        from kaggle_kit.train.frozen import check_config

        check_config(cfg, comp.schema.targets)
    check_model_fits(cfg, backbone_config)
    cfg = cfg.model_copy(update=window_settings(cfg, backbone_config))
    depth = getattr(backbone_config, "num_hidden_layers", None) or cfg.pooling_layers
    data = data_dir if data_dir == SAMPLE else str(Path(data_dir).resolve())
    return cfg.model_copy(update={
        "pooling_layers": min(cfg.pooling_layers, depth), "loss": loss, "input_format": input_format,
        "precision": resolved_precision(cfg.precision, device), "data": data,
        "competition_version": comp.version, "targets": [t.record() for t in comp.schema.targets],
        "label_cue": cfg.label_cue if cfg.label_cue is not None else comp.label_cue or DEFAULT_LABEL_CUE,  # recorded
    })


def decoder_settings(cfg: TrainConfig, backbone_config) -> dict:
    """A decoder pools its last real token unless asked otherwise; `cls` (the first token) is refused: in a causal
    decoder the first token has seen nothing but itself."""
    from kaggle_kit.models.decoder import is_decoder

    if not is_decoder(backbone_config):
        if cfg.head == "label-tokens":
            raise KitError(f"--head label-tokens: scores label words with a decoder's LM head, and "
                           f"{backbone_config.model_type} is not a decoder LLM; use --head linear")
        return {}
    if cfg.head == "label-tokens" and cfg.pooling != "last-token" and "pooling" in cfg.model_fields_set:
        raise KitError(f"--head label-tokens with --pooling {cfg.pooling}: the label words' logits are read at the "
                       f"last real token; drop --pooling (last-token)")
    if cfg.head == "label-tokens":
        return {"pooling": "last-token"}
    if "pooling" not in cfg.model_fields_set:
        return {"pooling": "last-token"}
    if cfg.pooling in ("cls", "concat-last4"):
        raise KitError(f"--pooling {cfg.pooling}: pools the first token, which in a decoder "
                       f"({backbone_config.model_type}) has attended to nothing but itself; use last-token or mean")
    return {}


def adapter_settings(cfg: TrainConfig, model_path: Path, device: torch.device) -> dict:
    """With LoRA: peft must be there, the settings that would silently do nothing are refused, and the base model's
    identity is recorded (the run's folds hold adapters that only fit that base)."""
    if not cfg.lora_r:
        return {}
    from kaggle_kit.models.identity import check_base_model, model_identity
    from kaggle_kit.models.lora import lora_targets, quantization_config, require_peft

    require_peft()
    lora_targets(cfg.lora_targets)
    quantization_config(cfg.load_in_4bit, cfg.load_in_8bit, device, None)
    if cfg.mode == "frozen":
        raise KitError("--lora-r with --mode frozen: a frozen backbone trains no adapters; drop one of them")
    if cfg.base_model is not None:  # a resumed run: its finished folds fit only the base it recorded
        check_base_model(model_path, cfg.base_model)
        return {}
    log.info("recording the base model's identity (sha256 of %s's weight files)", model_path)
    return {"base_model": model_identity(model_path, full=True),
            "lora_alpha": cfg.lora_alpha or 2.0 * cfg.lora_r}
def check_devices(cfg: TrainConfig, device: torch.device) -> None:
    """--devices names GPUs of this machine, and only when training runs on GPUs."""
    if cfg.devices is None:
        return
    shown = ",".join(map(str, cfg.devices))
    if device.type != "cuda":
        raise KitError(f"--devices {shown}: names GPUs, but this run trains on {device.type}; on a CPU use "
                       f"--fold-workers N alone (they share --threads)")
    check_gpus_exist(cfg.devices)
    if len(set(cfg.devices)) != len(cfg.devices):
        raise KitError(f"--devices {shown}: a GPU is named twice")


def check_model_fits(cfg: TrainConfig, backbone_config) -> None:
    """Settings the model's shape rules out: more pooled layers than it has (when asked for: the default is capped
    at the model's depth), more tokens than its positions."""
    depth = getattr(backbone_config, "num_hidden_layers", None)
    asked = "pooling_layers" in cfg.model_fields_set
    if asked and cfg.pooling in LAYER_POOLINGS and depth is not None and cfg.pooling_layers > depth:
        raise KitError(f"--pooling-layers {cfg.pooling_layers}: the model has {depth} layers "
                       f"(use --pooling-layers {depth} or fewer)")
    for name in ("reinit_layers", "freeze_layers"):
        if depth is not None and getattr(cfg, name) > depth:
            raise KitError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: the model has {depth} layers")
    if depth is not None and cfg.reinit_layers + cfg.freeze_layers > depth:
        raise KitError(f"--reinit-layers {cfg.reinit_layers} with --freeze-layers {cfg.freeze_layers}: the model has "
                       f"{depth} layers, so some would be re-initialised and frozen (random forever)")
    if cfg.lora_r and (cfg.reinit_layers or cfg.freeze_layers or cfg.freeze_embeddings):
        raise KitError("--reinit-layers/--freeze-layers/--freeze-embeddings act on the backbone's own weights, "
                       "which --lora-r already freezes; drop them")


def window_settings(cfg: TrainConfig, backbone_config) -> dict:
    """Sliding windows where --max-len passes the model's absolute positions (or --window-len): the window and
    stride the run records. Relative-position models (DeBERTa-v2/v3) take a longer --max-len as it is."""
    from kaggle_kit.models.decoder import is_decoder

    limit = position_limit(backbone_config)
    if cfg.window_len is not None and limit is not None and cfg.window_len > limit:
        raise KitError(f"--window-len {cfg.window_len}: the model has {limit} absolute positions "
                       f"(max_position_embeddings); use --window-len {limit} or less")
    window = cfg.window_len or (limit if limit is not None and cfg.max_len > limit else None)
    if window is None or cfg.max_len <= window:
        return {}
    if is_decoder(backbone_config):
        raise KitError(f"--max-len {cfg.max_len}: sliding windows are for encoders; a decoder "
                       f"({backbone_config.model_type}) pools its last token, which a window cut would hide (use "
                       f"--max-len {window} or less)")
    stride = cfg.window_stride or max(1, window // 2)
    if stride > window:
        raise KitError(f"--window-stride {stride}: above the window of {window} tokens")
    log.info("--max-len %d: sliding windows of %d tokens every %d (%s), token states averaged where windows "
             "overlap; each long input costs about %.1fx the compute and activation memory of one window",
             cfg.max_len, window, stride, "--window-len" if cfg.window_len else "the model's position limit",
             1 + max(0, cfg.max_len - window) / stride)
    return {"window_len": window, "window_stride": stride}


def position_limit(backbone_config) -> int | None:
    """The longest input an absolute-position model can embed; None where positions are relative (DeBERTa-v2/v3
    without position-biased input), so longer inputs just work."""
    limit = getattr(backbone_config, "max_position_embeddings", None)
    if limit is None:
        return None
    if getattr(backbone_config, "model_type", "") == "deberta-v2" and not getattr(
            backbone_config, "position_biased_input", True):
        return None
    if getattr(backbone_config, "position_embedding_type", "absolute") not in ("absolute", None):
        return None
    if getattr(backbone_config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # their positions start after the padding index
    return int(limit)


def assign_folds(comp: Competition, train_df: pd.DataFrame, cfg: TrainConfig, source: Path) -> np.ndarray:
    """The plugin's fold strategy, refused when a fold would be too small to score."""
    n_rows = len(train_df)
    if n_rows // cfg.folds < 2:
        raise KitError(f"--folds {cfg.folds}: {source} has {n_rows} rows, so a fold would hold "
                       f"{n_rows // cfg.folds} validation row(s); use --folds {max(2, n_rows // 2)} or fewer")
    try:
        folds = comp.fold_strategy(train_df, comp.schema.target_names, cfg.folds, cfg.split_seed)
    except ValueError as err:
        raise KitError(f"--folds {cfg.folds}: {comp.name}'s fold strategy cannot split {source} "
                       f"({' '.join(str(err).split())})") from None
    sizes = np.bincount(folds[folds >= 0], minlength=cfg.folds)
    if sizes.min() < 2:
        raise KitError(f"--folds {cfg.folds}: fold {int(sizes.argmin())} would hold {int(sizes.min())} validation "
                       f"row(s) of {source}; use fewer --folds")
    if sizes.min() < FEW_VALIDATION_ROWS:
        log.warning("WARNING: only %d validation rows in the smallest of %d folds: its CV score is mostly noise "
                    "(use fewer --folds or more data)", sizes.min(), cfg.folds)
    return folds


def check_output_folder(path: Path, resume: bool) -> None:
    """A new run needs a new or empty folder that can be created; a resumed one its own run folder."""
    if resume:
        if not (path / "run_config.json").is_file():
            raise KitError(f"--resume: {path} is not a run folder (no run_config.json)")
        return
    if (path / "run_config.json").exists():
        raise KitError(f"--out {path}: already holds a run; pass --resume to continue it or choose a new --out")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise KitError(f"--out {path}: exists and is not an empty folder; choose a new --out")
    parent = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise KitError(f"--out {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise KitError(f"--out {path}: cannot create it, {parent} is not writable; choose a writable --out")
