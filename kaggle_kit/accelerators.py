"""Kaggle's accelerators, declared once: what kernel-metadata.json names each one, its GPUs and their memory,
whether they compute in bf16, and the throughput the bundle's time projection assumes for them.

Sources (checked 2026-11): the `machine_shape` values of kaggle-cli docs/kernels.md and kagglesdk 0.1.38's
ApiSaveKernelRequest docstring, with Kaggle/kaggle-cli#1198 (NvidiaTeslaT4 is "GPU T4 x2", the default GPU; a
single T4 is not offered) and #1151/#1156 (P100 allocates, but the image's torch 2.10.0+cu128 has no sm_60
kernels, so every CUDA op fails). The throughputs are assumptions, not measurements (see ship/projection.py).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
HEADROOM_GIB = 2.0  # activations, CUDA context


@dataclass(frozen=True)
class Accelerator:
    """One `kit bundle --accelerator` choice: what kernel-metadata.json gets for it, and what it holds."""

    name: str
    machine_shape: str | None  # None: the key is left out (CPU session)
    gpu: str  # the GPU's name, "" for none
    gpus: int
    memory_gib: float  # per GPU
    bf16: bool  # native bf16 (compute capability 8.0 and up); else fp16
    tflops: float | None  # effective fp16 TFLOP/s per GPU the projection assumes; None: no assumption
    note: str
    retired: str = ""  # why it is refused, if it is

    @property
    def enable_gpu(self) -> bool:
        return self.gpus > 0


ACCELERATORS = {a.name: a for a in (
    Accelerator("none", None, "", 0, 0.0, False, 0.0, "CPU only"),
    Accelerator("t4x2", "NvidiaTeslaT4", "T4", 2, 15.0, False, 20.0,
                "GPU T4 x2, Kaggle's default GPU (compute capability 7.5: fp16)"),
    Accelerator("l4", "NvidiaL4", "L4", 1, 22.0, True, 40.0, "GPU L4 where Kaggle offers it (8.9: bf16)"),
    Accelerator("l4x1", "NvidiaL4X1", "L4", 1, 22.0, True, 40.0, "one L4 where Kaggle offers it (8.9: bf16)"),
    Accelerator("a100", "NvidiaTeslaA100", "A100", 1, 40.0, True, 100.0, "A100, only in some competitions (8.0: bf16)"),
    Accelerator("h100", "NvidiaH100", "H100", 1, 80.0, True, 250.0, "H100, only in some competitions (9.0: bf16)"),
    Accelerator("rtx-pro-6000", "NvidiaRtxPro6000", "RTX PRO 6000", 1, 96.0, True, 120.0,
                "RTX PRO 6000, only in some competitions"),
    Accelerator("p100", "NvidiaTeslaP100", "P100", 1, 16.0, False, None, "retired",
                retired="P100 is retired on Kaggle: it still allocates, but the current image's torch "
                        "(2.10.0+cu128) has no kernels for its compute capability 6.0, so the first CUDA operation "
                        "fails (Kaggle/kaggle-cli#1151); use --accelerator t4x2"),
)}
DEFAULT_ACCELERATOR = "t4x2"
SHAPES = {a.machine_shape: a for a in ACCELERATORS.values() if a.machine_shape}


def fits_one_gpu(model_gib: float, gpu_gib: float) -> bool:
    """Whether a model's weights fit one GPU with room for activations and the CUDA context."""
    return model_gib + HEADROOM_GIB <= gpu_gib


def fits_split(model_gib: float, gpu_gibs: list[float]) -> bool:
    """Whether a model's weights fit when split layer by layer over all the GPUs, each keeping its headroom."""
    return model_gib + HEADROOM_GIB * len(gpu_gibs) <= sum(gpu_gibs)
