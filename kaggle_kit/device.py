"""Device and numeric precision: AMP on CUDA (bf16 from compute capability 8.0, else fp16), plain fp32 on CPU."""

from __future__ import annotations

import contextlib
import logging
import os
import random

import numpy as np
import torch

from kaggle_kit.errors import KitError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KitError(f"--device {name}: CUDA is not available on this machine")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise KitError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0.."
                       f"cuda:{torch.cuda.device_count() - 1})")
    return device


def check_gpus_exist(gpus: list[int]) -> None:
    """Every GPU a --devices list names is one of this machine's (training and prediction check the same way)."""
    count = torch.cuda.device_count()
    missing = [g for g in gpus if not 0 <= g < count]
    if missing:
        raise KitError(f"--devices {','.join(map(str, gpus))}: GPU {missing[0]} does not exist; this machine has "
                       f"{count} (0..{count - 1})")


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32."""
    if device.type != "cuda":
        if precision in ("fp16", "bf16"):
            raise KitError(f"--precision {precision}: mixed precision needs a CUDA GPU; use fp32 or auto on CPU")
        return None
    if precision == "bf16" and not native_bf16(device):
        raise KitError(f"--precision bf16: {describe(device)} has compute capability "
                       f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}; bf16 needs 8.0 (Ampere) or "
                       f"newer and is only emulated, slowly, below it: use fp16 or auto")
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float16
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The run's recorded precision at inference. On CPU everything runs in fp32; a bf16 run on a GPU without bf16
    (a T4) runs in fp16, the nearest fast type, with a warning rather than in emulated bf16."""
    if device.type != "cuda":
        return None
    if precision == "bf16" and amp_dtype("auto", device) != torch.bfloat16:
        logging.getLogger(__name__).warning("the run was trained in bf16; this GPU has no fast bf16: "
                                            "predicting in fp16")
        return torch.float16
    return amp_dtype(precision, device)


def resolved_precision(precision: str, device: torch.device) -> str:
    """`auto` made concrete for this device (what the run records), checked against the device."""
    dtype = amp_dtype(precision, device)
    return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def native_bf16(device: torch.device) -> bool:
    """bf16 in hardware: compute capability 8.0 or newer (A100, L4, H100; not Kaggle's T4 at 7.5 or P100 at 6.0).

    `torch.cuda.is_bf16_supported()` is not the test: recent torch answers True on pre-Ampere GPUs because it can
    emulate bf16, which runs far slower than fp16 there.
    """
    return torch.cuda.get_device_capability(device) >= (8, 0)


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, parameters,
                   max_grad_norm: float) -> torch.Tensor:
    """One optimizer step after the (scaled) backward passes: unscale so the clip sees true gradient norms, clip,
    step (the scaler skips it when fp16 overflowed), update the scale, clear the gradients. The gradient norm before
    clipping is returned as a tensor (no host sync)."""
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
