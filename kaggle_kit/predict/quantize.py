"""Opt-in int8 dynamic quantisation for CPU inference (`kit predict --quantize int8`, `kit bundle --quantize int8`).

The backbone's linear layers get int8 weights (quantised once) and int8 activations (quantised per batch) through
torch.ao's `quantize_dynamic`: on a CPU with VNNI/AVX-512 or AVX2 their matrix products run on fbgemm/oneDNN int8
kernels. The pooling head and the output layer stay in fp32: they cost nothing and carry the final scale. GPUs
ignore the setting (they run fp16/bf16, which is faster there).

torch.ao's eager quantisation is deprecated in favour of the torchao package; it is used here because it ships with
every torch the kit supports (Kaggle's image included) and runs fast in eager mode on a CPU without compiling.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from kaggle_kit.errors import KitError

log = logging.getLogger(__name__)
QUANTIZE_MODES = ("int8",)


def check_mode(mode: str | None, option: str = "--quantize") -> str | None:
    if mode is not None and mode not in QUANTIZE_MODES:
        raise KitError(f"{option} {mode!r} is unknown; choose one of: {', '.join(QUANTIZE_MODES)}")
    return mode


def applies(mode: str | None, device: torch.device) -> bool:
    """Quantisation is for CPU inference; on a GPU the recorded mode is ignored (said once in the log)."""
    if mode is None:
        return False
    if device.type != "cpu":
        log.info("quantize %s is for CPU inference; predicting on %s without it", mode, device)
        return False
    return True


def quantize_model(model: nn.Module, mode: str = "int8") -> nn.Module:
    """The model with its backbone's nn.Linear layers dynamically quantised to int8 (in place, eval mode)."""
    from torch.ao.quantization import quantize_dynamic

    check_mode(mode)
    model.eval()
    with warnings.catch_warnings():  # torch >= 2.10 warns that torch.ao eager quantisation moves to torchao
        warnings.simplefilter("ignore")
        model.backbone = quantize_dynamic(model.backbone, {nn.Linear}, dtype=torch.qint8)
    return model


def manifest_mode(manifest: dict[str, Any]) -> str | None:
    """The quantisation a bundle asks for (recorded by `kit bundle --quantize`), or None."""
    return (manifest.get("quantize") or {}).get("mode")


@dataclass
class QuantizedOOF:
    """The run's out-of-fold rows predicted in fp32 and in int8 on this CPU, scored with the competition metric."""

    mode: str
    metric: str
    rows: int
    score_fp32: float
    score_quantized: float
    max_abs_diff: float
    seconds_fp32: float
    seconds_quantized: float

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "metric": self.metric, "oof_rows": self.rows, "oof_score_fp32": self.score_fp32,
                f"oof_score_{self.mode}": self.score_quantized, "max_abs_diff": self.max_abs_diff,
                "cpu_seconds_fp32": round(self.seconds_fp32, 1),
                f"cpu_seconds_{self.mode}": round(self.seconds_quantized, 1)}

    def line(self) -> str:
        delta = self.score_quantized - self.score_fp32
        return (f"quantize {self.mode}: OOF {self.metric} {self.score_quantized:.4f} vs {self.score_fp32:.4f} in fp32 "
                f"({delta:+.4f}) on {self.rows} rows, predictions within {self.max_abs_diff:.3f}; CPU time "
                f"{self.seconds_quantized:.0f}s vs {self.seconds_fp32:.0f}s")


def oof_effect(comp, run_path, mode: str = "int8", batch_size: int | None = None,
               log_line: Callable[[str], None] = print) -> QuantizedOOF:
    """Predict each finished fold's validation rows with its fold model, in fp32 and quantised, on the CPU.

    Needs the run's training data (the data folder recorded in run_config.json, hash-checked against the run).
    """
    from kaggle_kit.data.load import load_train
    from kaggle_kit.fileio import sha256_file
    from kaggle_kit.predict.inference import (
        build_model_inputs,
        check_run_for,
        in_plugin_order,
        infer,
        load_fold_model,
        load_tokenizer,
        run_files,
        run_targets,
    )
    from kaggle_kit.runs.folder import RunDir
    from kaggle_kit.tasks.losses import apply_link, get_loss

    run = RunDir(run_path)
    cfg = check_run_for(comp, run)
    data_dir = run.data_dir()
    train_csv = None if data_dir is None else run.path.joinpath(data_dir, "train.csv")
    if train_csv is None or not train_csv.is_file():
        raise KitError(f"--quantize: scoring int8 against fp32 needs {run.path.name}'s training data ({train_csv}); "
                       f"make it available there, or bundle without --quantize")
    recorded = run.load_manifest().get("data", {}).get("train.csv", {}).get("sha256")
    if recorded and recorded != sha256_file(train_csv):
        raise KitError(f"--quantize: {train_csv} changed since {run.path.name} was trained, so its OOF rows are "
                       f"not the run's; restore it, or bundle without --quantize")
    id_col = comp.schema.id_column
    train_df = load_train(comp, train_csv.parent)
    folds = pd.read_csv(run.folds_csv, dtype={id_col: str})
    train_df = train_df.set_index(train_df[id_col].astype(str)).loc[folds[id_col]].reset_index(drop=True)
    tokenizer = load_tokenizer(run.tokenizer)
    ids = build_model_inputs(comp, train_df, tokenizer, cfg, train_csv.parent, run_files(comp, run, cfg, None),
                             split="train")
    loss_spec = get_loss(cfg.loss or comp.default_loss, comp.losses)
    trained = run_targets(comp, cfg, run.path)
    cpu = torch.device("cpu")
    y = train_df[comp.schema.target_names].to_numpy(dtype=np.float64)
    preds = {"fp32": np.zeros((len(y), comp.n_outputs)), mode: np.zeros((len(y), comp.n_outputs))}
    seconds = {"fp32": 0.0, mode: 0.0}
    used = np.zeros(len(y), dtype=bool)
    for fold in run.cv_folds():  # the full-train model has no OOF rows
        rows = np.flatnonzero(folds["fold"].to_numpy() == fold)
        fold_ids = [ids[i] for i in rows]
        for variant in ("fp32", mode):
            model = load_fold_model(run, cfg, comp.n_outputs, fold, cpu, quantize=None if variant == "fp32" else mode)
            started = time.perf_counter()
            raw = infer(model, fold_ids, tokenizer.pad_token_id or 0, batch_size or cfg.eval_batch_size, cpu, None,
                        desc=f"{run.path.name} fold {fold} {variant}", max_tokens=cfg.eval_max_tokens)
            seconds[variant] += time.perf_counter() - started
            linked = apply_link(loss_spec, torch.from_numpy(raw), trained).numpy()
            preds[variant][rows] = comp.postprocess(in_plugin_order(linked, trained, comp))
        used[rows] = True
    targets = comp.schema.targets
    scores = {v: comp.metric(y[used], p[used], targets).score for v, p in preds.items()}
    effect = QuantizedOOF(mode, comp.metric.name, int(used.sum()), scores["fp32"], scores[mode],
                          float(np.abs(preds[mode][used] - preds["fp32"][used]).max()), seconds["fp32"], seconds[mode])
    log_line(effect.line())
    return effect
