"""LoRA and QLoRA adapters with peft; 4/8-bit base weights with bitsandbytes (CUDA only).

Why adapters: a 9B model has ~9e9 weights; full fine-tuning needs ~16 bytes per weight for weights, gradients and
AdamW states (~144 GB), while LoRA trains ~0.1-1% of that and the frozen base can sit in 4 bits (~5 GB for 9B).
A fold then saves only the adapters and the head: tens of MB, where the base model stays where it is (a Kaggle
Model or dataset attached to the notebook).

Both libraries are optional extras (`pip install 'kaggle-kit[llm]'`): an encoder user installs nothing new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from kaggle_kit.errors import KitError

log = logging.getLogger(__name__)


def require_peft():
    try:
        import peft
    except ImportError:
        raise KitError("--lora-r needs peft: pip install 'kaggle-kit[llm]'") from None
    return peft


def quantization_config(load_in_4bit: bool, load_in_8bit: bool, device: torch.device,
                        compute_dtype: torch.dtype | None):
    """A BitsAndBytesConfig for 4-bit NF4 (QLoRA: double quantisation, compute in fp16/bf16) or 8-bit weights."""
    if not (load_in_4bit or load_in_8bit):
        return None
    flag = "--load-in-4bit" if load_in_4bit else "--load-in-8bit"
    if device.type != "cuda":
        raise KitError(f"{flag}: bitsandbytes quantisation needs a CUDA GPU (this run's device is {device}); "
                       f"drop the flag to train LoRA adapters on full-precision weights")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise KitError(f"{flag} needs bitsandbytes: pip install 'kaggle-kit[llm]'") from None
    from transformers import BitsAndBytesConfig

    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype or torch.float16)


def lora_targets(spec: str) -> str | list[str]:
    """`all-linear` (every linear layer of the backbone) or a comma list of module names (q_proj,v_proj)."""
    if spec == "all-linear":
        return spec
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise KitError("--lora-targets: give all-linear or module names such as q_proj,k_proj,v_proj,o_proj")
    return names


@dataclass(frozen=True)
class AdapterSpec:
    """The LoRA settings of a run (recorded in its run_config.json as lora_*)."""

    r: int
    alpha: float
    dropout: float
    targets: str

    @classmethod
    def of(cls, cfg) -> AdapterSpec | None:
        if not cfg.lora_r:
            return None
        return cls(cfg.lora_r, cfg.lora_alpha or 2.0 * cfg.lora_r, cfg.lora_dropout, cfg.lora_targets)


def add_adapters(backbone: nn.Module, spec: AdapterSpec, quantized: bool = False) -> nn.Module:
    """The backbone with LoRA adapters; its own weights frozen (peft does that). Adapters stay fp32 when the base
    is held in half precision (peft's autocast_adapter_dtype)."""
    peft = require_peft()
    if quantized:
        backbone = peft.prepare_model_for_kbit_training(backbone, use_gradient_checkpointing=False)
    config = peft.LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                             target_modules=lora_targets(spec.targets), bias="none")
    try:
        model = peft.get_peft_model(backbone, config)
    except ValueError as err:
        raise KitError(f"--lora-targets {spec.targets}: {' '.join(str(err).split())[:300]}") from None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d alpha=%g on %s: %s trainable of %s backbone weights (%.2f%%)", spec.r, spec.alpha,
             spec.targets, f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
    return model


def saved_with_fold(name: str) -> bool:
    """Whether a LoRA fold saves this parameter: the adapters and everything outside the backbone (pooling head,
    output layer, label rows); the base's own weights are never saved."""
    return not name.startswith("backbone.") or "lora_" in name


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a LoRA fold saves (`saved_with_fold`)."""
    state = {}
    for name, tensor in model.state_dict().items():
        if saved_with_fold(name):
            state[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return state


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights (W + BA): the same outputs, no adapter overhead at inference."""
    backbone = model.backbone
    if hasattr(backbone, "merge_and_unload"):
        model.backbone = backbone.merge_and_unload()
    return model
