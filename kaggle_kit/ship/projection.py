"""How long the bundle's notebook will run on Kaggle's accelerator, projected before anything is uploaded.

A forward pass costs about 2 x parameters FLOPs per token. The projection multiplies that by the hidden test's
tokens (rows x the run's mean tokens per row, capped at its max_len), divides by a stated effective throughput per
GPU, adds reading the weights as stored (a 4-bit base is read from its 16-bit checkpoint) once per fold, and
spreads folds over the GPUs when one
model fits on one GPU (else one model is split over both and folds run one after another).

The throughputs are assumptions, not measurements on Kaggle's T4 (none was available to this project): a T4 peaks
at 65 fp16 tensor TFLOP/s and Hugging Face inference with padding reaches roughly a third of that, so 20 TFLOP/s is
assumed for fp16 and half that for bitsandbytes 4/8-bit weights (dequantising costs time). `--assume-tflops`
overrides it; `kit simulate` measures the real thing on the machine it runs on.

Three projections of the notebook's time, one method (`notebook_seconds`): time that does not grow with the
test (setup, imports, loading) plus one fold's time for each round of folds, a round being as many folds as run
at once. They differ only in where each number comes from, because each is made at a different moment with
different knowledge:
- `kit bundle` (here, before upload, nothing measured): fixed = an assumed 120 s of setup; a fold = FLOPs of the
  hidden test at the accelerator's assumed throughput + reading its weights; folds per round = the GPUs one model
  fits (1 on a CPU, for a model split over both T4s, and for LoRA runs). Its error is the throughput assumption.
- `kit simulate` (measured on this machine, on the given test rows): fixed = the notebook's measured time minus
  its inference; a fold = its measured inference time scaled linearly by hidden rows / test rows; folds one after
  another (the kernel runs on the CPU, CUDA hidden). It errs long on a GPU notebook (CPU speed, no parallel folds)
  and short when the hidden texts are longer than the test rows'.
- the notebook's DeadlineGuard (kaggle_runtime, measured on Kaggle, on the hidden test itself): fixed = the time
  elapsed so far; a fold = the mean of the folds already done; rounds = the remaining folds over the GPUs. It is
  the only one that sees the real machine and rows, so it alone decides to stop (when the next fold would end
  past the budget, a rule of its own: it keeps folds that still fit even when the whole remainder would not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kaggle_kit.accelerators import ACCELERATORS, GIB, fits_one_gpu, fits_split

CPU_TFLOPS = 0.2  # a Kaggle CPU notebook (4 cores)
DISK_GBPS = 0.3  # reading weights from an attached dataset or model
BYTES_PER_WEIGHT = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "4bit": 0.56}
def notebook_seconds(fixed_seconds: float, fold_seconds: float, folds: int, parallel: int = 1) -> float:
    """The notebook's time: `fixed_seconds` plus `fold_seconds` for each round of `parallel` folds at once (the
    method all three projections share; see the module's docstring for where each takes its numbers)."""
    return fixed_seconds + fold_seconds * math.ceil(folds / max(parallel, 1))




@dataclass(frozen=True)
class RunCost:
    """What one run costs per fold: its weights and the tokens it reads."""

    name: str
    parameters: float
    folds: int
    tokens_per_row: float
    weights_format: str = "fp16"  # how the weights are held at inference (fp16, 4bit, int8, fp32)
    stored_bytes_per_weight: float = 2.0  # as read from disk: a 4-bit base is quantised from its 16-bit checkpoint
    parallel_folds: bool = True  # LoRA runs predict their folds one after another (one base in memory at a time)
    # Test-time training per fold: rows through a training step (3 x a forward: forward and backward) and rows
    # predicted once more first (source=pseudo labels the test before the steps)
    train_rows: float = 0.0
    extra_forward_rows: float = 0.0


@dataclass(frozen=True)
class Projection:
    seconds: float
    per_run: dict[str, float]
    layout: dict[str, str]
    assumptions: str

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def project(runs: list[RunCost], rows: int, accelerator: str, assume_tflops: float | None = None,
            setup_seconds: float = 120.0) -> Projection:
    """Projected notebook seconds: setup (install, imports) plus, per run, loading and inference of its folds."""
    machine = ACCELERATORS[accelerator]  # GPUs, memory per GPU (GiB), effective fp16 TFLOP/s per GPU (assumed)
    gpus, memory, tflops = machine.gpus, machine.memory_gib, machine.tflops
    total, per_run, layout = setup_seconds, {}, {}
    for run in runs:
        bytes_per = BYTES_PER_WEIGHT[run.weights_format]
        model_gib = run.parameters * bytes_per / GIB
        speed = (assume_tflops or tflops) * (0.5 if run.weights_format in ("4bit", "int8") else 1.0)
        if gpus == 0:
            speed, parallel = assume_tflops or CPU_TFLOPS, 1
            layout[run.name] = "CPU"
        elif fits_one_gpu(model_gib, memory) and not run.parallel_folds:
            parallel = 1
            layout[run.name] = f"one fold at a time on one GPU ({model_gib:.1f} GiB of weights)"
        elif fits_one_gpu(model_gib, memory):
            parallel = min(gpus, run.folds)
            layout[run.name] = f"one fold per GPU ({model_gib:.1f} GiB of weights each), {parallel} at a time"
        else:
            parallel = 1
            layout[run.name] = f"one model split over {gpus} GPUs ({model_gib:.1f} GiB of weights)"
            if not fits_split(model_gib, [memory] * gpus):
                layout[run.name] += " - DOES NOT FIT: hold the weights in 4 bits (--load-in-4bit)"
        flops = 2.0 * run.parameters * run.tokens_per_row * (
            rows + run.extra_forward_rows + 3.0 * run.train_rows)
        fold_seconds = flops / (speed * 1e12) + run.parameters * run.stored_bytes_per_weight / (DISK_GBPS * 1e9)
        per_run[run.name] = notebook_seconds(0.0, fold_seconds, run.folds, parallel)
        total += per_run[run.name]
    assumptions = (f"{accelerator}: {gpus} GPU(s), {memory:g} GiB each, {assume_tflops or tflops:g} effective TFLOP/s "
                   f"per GPU for fp16 (half for 4/8-bit), 2 x parameters FLOPs per token, weights read at "
                   f"{DISK_GBPS:g} GB/s, {setup_seconds:.0f} s setup; not measured on Kaggle")
    return Projection(total, per_run, layout, assumptions)


def safetensors_parameters(path) -> int:
    """Parameters in a safetensors file, read from its header only (no tensor is loaded)."""
    import json
    import math
    import struct

    with open(path, "rb") as handle:
        header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def bundle_run_cost(name: str, run, folds: int, accelerator: str, fold: int | None = None,
                    test_time=None, hidden_rows: int = 0) -> RunCost:
    """One bundled run's cost: parameters from the weights' headers (a LoRA run's base from its folder, else from
    the recorded file sizes at 2 bytes a weight), tokens per row as training measured them (else max_len); `fold`
    is a bundled fold to read the headers of [default: the first finished one]."""
    from pathlib import Path

    cfg = run.load_config()
    from kaggle_kit.models.identity import weight_files

    stored = sum(f["size"] for f in cfg.base_model["files"].values()) if cfg.lora_r else None
    if cfg.lora_r:
        base = Path(cfg.model or "")
        files = [f for f in weight_files(base) if f.suffix == ".safetensors"] if base.is_dir() else []
        parameters = sum(safetensors_parameters(f) for f in files) if files else stored / 2
    else:
        weights = run.weights(fold if fold is not None else run.finished_folds()[0])
        parameters, stored = safetensors_parameters(weights), weights.stat().st_size
    manifest = run.load_manifest() if run.manifest.is_file() else {}
    tokens = manifest.get("tokens_per_row") or cfg.max_len
    weights_format = ("4bit" if cfg.load_in_4bit else "int8" if cfg.load_in_8bit
                      else "fp32" if ACCELERATORS[accelerator].gpus == 0 else "fp16")
    train_rows = test_time.steps * test_time.batch_size if test_time is not None else 0
    pseudo = test_time is not None and test_time.source == "pseudo"
    return RunCost(name, float(parameters), folds, float(min(tokens, cfg.max_len)), weights_format,
                   stored / max(parameters, 1), parallel_folds=not cfg.lora_r, train_rows=float(train_rows),
                   extra_forward_rows=float(hidden_rows if pseudo else 0))
