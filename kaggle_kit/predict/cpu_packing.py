"""fp32 CPU inference on oneDNN's prepacked linear kernels, with GELU fused into the feed-forward's first matmul.

An encoder's batches on a CPU are its linear layers (about three quarters of the time) and attention. torch's
nn.Linear copies the bias into every output row before the matmul and re-lays out the weight on each call, and the
feed-forward's GELU is one more pass over its widest activation. oneDNN's `_linear_pointwise` (the op torch.compile
emits for CPU) takes the weight laid out once, adds the bias inside the kernel and applies GELU before the output
leaves the cache: the same fp32 arithmetic in another summation order (outputs within about 1e-6), about 9% less
batch time on an encoder here (`benchmarks/predict_profile.py --unpacked` prints the kit with and without it).

Packing is done once per loaded fold model and only where it is exact: plain fp32 nn.Linear layers of the backbone
on an x86 CPU whose torch has oneDNN (a LoRA fold's once merged); unmerged LoRA folds, int8 models and GPUs keep
their modules. Each replaced module is checked against the original on a probe input before it is swapped, so a
backend that computes something else leaves the model on nn.Linear from that layer on.
"""

from __future__ import annotations

import functools
import logging
import platform
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from kaggle_kit.data.loader import CPU_BATCH_TOKENS  # oneDNN's layout hint: the rows of a CPU batch

log = logging.getLogger(__name__)

PROBE_TOLERANCE = 1e-4
X86_MACHINES = ("x86_64", "amd64")


class PackedLinear(nn.Module):
    """nn.Linear on oneDNN's prepacked fp32 weight, optionally followed by GELU inside the kernel."""

    def __init__(self, linear: nn.Linear, gelu: str | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(weight, CPU_BATCH_TOKENS),
                             persistent=False)
        bias = linear.bias.detach() if linear.bias is not None else None
        self.register_buffer("bias", bias, persistent=False)
        self.gelu = gelu  # oneDNN's algorithm name: "none" (erf, exact) or "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            # torch runs a kernel without an autograd formula and returns no gradient for `x`: the layers below
            # would train on a gradient that silently skipped this one
            raise RuntimeError("a oneDNN-packed linear layer (predict/cpu_packing.py) has no backward; it is for "
                               "inference, so nothing below it can train through it")
        if self.gelu is None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "gelu", [], self.gelu)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, gelu={self.gelu}"


def gelu_algorithm(activation: nn.Module | None) -> str | None:
    """oneDNN's name for `activation` when it is exactly torch's GELU (erf, or its tanh form), else None."""
    try:
        from transformers.activations import GELUActivation
    except ImportError:  # pragma: no cover - transformers is a core dependency
        GELUActivation = ()
    if isinstance(activation, GELUActivation) and getattr(activation, "act", None) is functional.gelu:
        return "none"
    if type(activation) is nn.GELU:
        return {"none": "none", "tanh": "tanh"}.get(activation.approximate)
    if type(activation).__name__ in ("GELUTanh", "PytorchGELUTanh"):  # transformers' torch-tanh GELU
        act = getattr(activation, "act", None)  # "gelu_python_tanh" is this class on the formula written in Python
        torch_tanh = isinstance(act, functools.partial) and act.func is functional.gelu and not act.args \
            and act.keywords == {"approximate": "tanh"}
        return "tanh" if act is None or torch_tanh else None
    return None


@dataclass
class Swap:
    parent: nn.Module
    name: str
    packed: PackedLinear
    fused: bool  # the parent's `intermediate_act_fn` GELU moves into `packed`


def available() -> bool:
    """An x86 CPU (the kernels measured here; on ARM, Apple's Macs included, torch's own linear is left alone) and a
    torch built with oneDNN and its packed linear op, where oneDNN was not switched off
    (`torch.backends.mkldnn.enabled = False`, torch's switch for a oneDNN that misbehaves on a machine)."""
    return (platform.machine().lower() in X86_MACHINES and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def packable_layers(backbone: nn.Module) -> list[tuple[nn.Module, str, str | None]]:
    """(parent, attribute name, oneDNN GELU algorithm or None) of each plain fp32 CPU nn.Linear of `backbone`. A
    feed-forward block in the BERT family's layout (a `dense` linear followed by `intermediate_act_fn`: BERT,
    RoBERTa, DeBERTa, ELECTRA, XLM-R) gets its GELU fused."""
    layers = []
    for parent in backbone.modules():
        for name, child in parent.named_children():
            if type(child) is not nn.Linear or child.weight.dtype != torch.float32 or child.weight.device.type != "cpu":
                continue
            gelu = gelu_algorithm(getattr(parent, "intermediate_act_fn", None)) if name == "dense" else None
            layers.append((parent, name, gelu))
    return layers


@torch.no_grad()
def agrees(swap: Swap, probe_rows: int = 3) -> bool:
    """The packed module computes what the module it replaces computed (with the activation, when fused)."""
    original = getattr(swap.parent, swap.name)
    probe = torch.randn(probe_rows, original.in_features, generator=torch.Generator().manual_seed(0))
    expected = original(probe)
    if swap.fused:
        expected = swap.parent.intermediate_act_fn(expected)
    got = swap.packed(probe)
    scale = float(expected.abs().max()) or 1.0
    return got.shape == expected.shape and float((got - expected).abs().max()) <= PROBE_TOLERANCE * scale


def pack_for_cpu(model: nn.Module) -> int:
    """Swap the backbone's linear layers of a loaded fp32 CPU `model` for oneDNN's packed ones (in place), one layer
    at a time (the memory of one layer's extra copy, not of the whole backbone's); the number of layers swapped.

    Each layer is checked against the one it replaces before the swap. The first one that fails or disagrees stops
    the packing: it and the layers after it stay on nn.Linear (with a torch that packs nothing right, that is the
    whole model), and every layer swapped before it computes what it replaced. A packed backbone is for inference:
    its remaining parameters are frozen (the packed op has no backward)."""
    backbone = getattr(model, "backbone", model)
    if not available():
        return 0
    swapped = fused = 0
    for parent, name, gelu in packable_layers(backbone):
        where = f"{type(parent).__name__}.{name}"
        try:
            swap = Swap(parent, name, PackedLinear(getattr(parent, name), gelu), gelu is not None)
            right = agrees(swap)
        except Exception as err:  # noqa: BLE001 - an old oneDNN without the op for this shape or CPU, a torch whose
            # private ops take other arguments: a speed-up that fails must never cost the prediction
            log.info("oneDNN linear packing unavailable at %s (%s: %s); %s", where, type(err).__name__,
                     " ".join(str(err).split())[:120], _rest_unpacked(swapped))
            break
        if not right:
            log.warning("oneDNN's packed linear disagrees with nn.Linear at %s; %s", where, _rest_unpacked(swapped))
            break
        setattr(parent, name, swap.packed)
        if swap.fused:
            parent.intermediate_act_fn = nn.Identity()
        swapped, fused = swapped + 1, fused + swap.fused
    if swapped:
        backbone.requires_grad_(False)  # what is left of it (embeddings, norms) cannot train through packed layers
    log.debug("packed %d linear layers for oneDNN (%d with GELU fused)", swapped, fused)
    return swapped


def _rest_unpacked(swapped: int) -> str:
    if not swapped:
        return "the fold runs on torch's nn.Linear"
    return f"the {swapped} layer(s) packed before it stay packed, it and the rest run on torch's nn.Linear"
