"""Every training setting, declared once: its type, default, help text and validation live on one field.

The `kit train` options, `--config` file checking, the `--resume` rules and the README's options table are all
derived from `TrainConfig`'s fields, so a setting cannot exist in one place and be missing in another.

Why pydantic: a field carries a real type (`Literal[...]` for choices, numeric bounds) plus free metadata for the
CLI, validation is the same for a flag, a YAML file and a saved `run_config.json`, and models round-trip through
JSON. Typer builds the command from a signature generated here (see `cli_parameters`); it never declares a
setting of its own.

Layering: defaults < preset (generic, then the competition's) < `--config` file < command-line flags. Each layer's
values are checked field by field as they are applied, so an error names where the bad value came from.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from kaggle_kit.errors import KitError

Mode = Literal["finetune", "frozen"]
Scheduler = Literal["linear", "cosine", "constant"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
Pooling = Literal["mean", "max", "min", "cls", "last-token", "attention", "gem", "lstm", "weighted-layer",
                  "concat-last4"]
Tracker = Literal["mlflow", "wandb", "tensorboard"]
PseudoStage = Literal["mix", "pretrain"]
Head = Literal["linear", "label-tokens"]
LabelTokenMode = Literal["first", "added"]
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps)$"


def _comma_list(value: Any) -> Any:
    """`--train-folds 0,2` arrives as text; a config file may give a list or a single number."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int):
        return [value]
    return value


FoldList = Annotated[list[int], BeforeValidator(_comma_list)]
GpuList = Annotated[list[Annotated[int, Field(ge=0)]], BeforeValidator(_comma_list)]


def _target_records(value: Any) -> Any:
    """Runs recorded bare target names before targets had kinds: each is a regression target."""
    if isinstance(value, list):
        return [{"name": v, "kind": "regression"} if isinstance(v, str) else v for v in value]
    return value


TargetRecords = Annotated[list[dict[str, Any]], BeforeValidator(_target_records)]


def setting(default: Any, help: str, *, flag: bool = True, resume_safe: bool = False, metavar: str | None = None,
            why: str = "", **bounds: Any) -> Any:
    """One setting: default, help, numeric bounds (ge/gt/le/lt) and how the CLI shows it.

    `flag=False` keeps a field out of the command line (recorded or file-only settings); `resume_safe` marks the
    settings `--resume` may change because they cannot change results; `why` is appended to a bounds error.
    """
    return Field(default, description=help, json_schema_extra={
        "flag": flag, "resume_safe": resume_safe, "metavar": metavar, "why": why}, **bounds)


class TrainConfig(BaseModel):
    """A training run's settings. Saved as the run's `run_config.json`, resolved: nothing is left to defaults
    that a later plugin or kit version could change (loss, input format, precision, targets are written out)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    competition: str = setting("ell", "Competition plugin name.", flag=False)
    preset: str | None = setting(None, "quick (a CPU run in minutes) or full (the GPU reference recipe); a "
                                       "competition may define more. Flags and --config override it.",
                                 metavar="NAME")
    mode: Mode = setting("finetune", "finetune, or frozen: pooled embeddings once + a ridge head per fold.")
    data: str | None = setting(None, "Folder with train.csv, or `sample` for the embedded sample [default: "
                                     "data/<competition>/, else the sample].", metavar="DIR", resume_safe=True)
    model: str | None = setting(None, "Local Hugging Face model folder [default: embedded all-MiniLM-L6-v2].",
                                metavar="PATH")
    folds: int = setting(4, "Number of CV folds K.", ge=2, why="K-fold CV needs a held-out fold")
    train_folds: FoldList | None = setting(None, "Comma-separated folds to train, e.g. 0,1 [default: all].",
                                           metavar="LIST", resume_safe=True)
    epochs: int = setting(3, "Epochs per fold.", ge=1)
    max_len: int = setting(512, "Max tokens per input (longer inputs are truncated); beyond a model's position "
                                "limit (or --window-len) the input runs as sliding windows.", ge=8)
    tail_tokens: int = setting(0, "Head+tail truncation: an input longer than --max-len keeps its last N tokens "
                                  "(the closing special token among them) and the rest from its start: an essay's "
                                  "conclusion, a decoder prompt's end, where last-token pooling reads. 0: the "
                                  "tokenizer's own truncation (the first --max-len tokens).",
                               ge=0, metavar="N")
    batch_size: int = setting(8, "Training batch size (per optimizer micro-step).", ge=1)
    eval_batch_size: int = setting(32, "Inference batch size.", ge=1, resume_safe=True)
    eval_max_tokens: int | None = setting(None, "Inference token budget: a batch holds at most this many padded "
                                                "tokens (long inputs go a few at a time); for LLMs on small GPUs "
                                                "[default: none on a GPU, 2048 on a CPU, where bigger batches run "
                                                "slower per token].",
                                          ge=1, resume_safe=True)
    lr: float = setting(2e-5, "Learning rate of the top encoder layer.", gt=0)
    head_lr: float = setting(1e-3, "Learning rate of the pooling head and output layer.", gt=0)
    llrd: float = setting(1.0, "Layer-wise LR decay per layer going down (1 = off, 0.9 typical).", gt=0, le=1,
                          why="1 means no decay")
    weight_decay: float = setting(0.01, "AdamW weight decay (never on biases and norm weights).", ge=0)
    scheduler: Scheduler = setting("cosine", "LR schedule after warmup.")
    warmup: float = setting(0.1, "Warmup as a fraction of all optimizer steps.", ge=0, lt=1)
    pooling: Pooling = setting("mean", "How token states become one vector per input.")
    pooling_layers: int = setting(4, "Layers used by weighted-layer / concat-last4 pooling.", ge=1)
    head: Head = setting("linear", "linear: a fresh output layer on the pooled state. label-tokens (decoders): "
                                   "the prompt ends with --label-cue and each output is the LM head's logits of "
                                   "one label word per class or score level at the last real token (their rows "
                                   "train; a score is the expected value over its levels).")
    label_cue: str | None = setting(None, "With --head label-tokens: the answer cue appended to every input; the "
                                          "label word is its next token [default: the competition's label_cue, "
                                          "else ' Answer:'].", metavar="TEXT")
    label_token_mode: LabelTokenMode = setting("first", "With --head label-tokens, a label word the tokenizer "
                                                        "splits: first = scored by its first piece (two labels "
                                                        "sharing it are refused); added = a new row of its own, "
                                                        "started from the mean of its pieces' LM-head rows.")
    label_tokens: list[dict[str, Any]] | None = setting(None, "With --head label-tokens: per target, its label "
                                                              "words, their token ids (resolved at training) and "
                                                              "a score's level values.", flag=False)
    loss: str | None = setting(None, "Training loss: rmse, mse, smoothl1, bce, pearson, cross-entropy, or one "
                                     "the competition declares [default: the competition's].", metavar="NAME")
    reinit_layers: int = setting(0, "Re-initialise the top N encoder layers before training (their pretraining "
                                    "task's specifics hurt regression heads).", ge=0)
    freeze_embeddings: bool = setting(False, "Keep the token embeddings fixed (less memory, less overfitting).")
    freeze_layers: int = setting(0, "Keep the bottom N encoder layers fixed.", ge=0)
    backbone_dropout: float | None = setting(0.0, "Dropout inside the backbone (0 = off, the regression default).",
                                             ge=0, lt=1)
    head_dropout: float = setting(0.0, "Dropout before the output layer.", ge=0, lt=1)
    grad_accum: int = setting(1, "Gradient accumulation: micro-batches per optimizer step.", ge=1)
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.", gt=0)
    precision: Precision = setting("auto", "auto (bf16 on GPUs with compute capability >= 8.0, fp16 with a grad "
                                           "scaler below, fp32 on CPU), fp32, fp16, bf16.")
    grad_checkpointing: bool = setting(False, "Recompute activations in backward: less memory, more compute.")
    lora_r: int = setting(0, "LoRA rank: train low-rank adapters plus the head instead of every weight (0 = off; "
                             "16-64 typical for 7-32B decoders).", ge=0)
    lora_alpha: float | None = setting(None, "LoRA scaling alpha [default: 2 x --lora-r].", gt=0)
    lora_dropout: float = setting(0.05, "Dropout on the LoRA adapters' input.", ge=0, lt=1)
    lora_targets: str = setting("all-linear", "Modules that get adapters: all-linear, or names such as "
                                              "q_proj,k_proj,v_proj,o_proj.", metavar="NAMES")
    load_in_4bit: bool = setting(False, "QLoRA: hold the frozen base in 4-bit NF4 (CUDA, bitsandbytes; needs "
                                        "--lora-r).")
    load_in_8bit: bool = setting(False, "Hold the frozen base in 8 bits (CUDA, bitsandbytes; needs --lora-r).")
    fgm_eps: float = setting(0.0, "FGM adversarial step on the word embeddings (0 = off).", ge=0)
    awp_lr: float = setting(0.0, "AWP adversarial weight perturbation rate (0 = off).", ge=0)
    awp_eps: float = setting(1e-3, "AWP perturbation bound, relative to each weight.", gt=0)
    awp_start_epoch: int = setting(1, "First epoch (0-based) with AWP.", ge=0)
    eval_every: int = setting(1, "Validations per epoch; the best one per fold is kept.", ge=1)
    ema: float = setting(0.0, "EMA decay of weights for evaluation and the saved checkpoint (0 = off).", ge=0, lt=1,
                         why="0 = off, 0.99-0.999 typical")
    seed: int = setting(42, "Seed for shuffling and initialisation (and the folds unless --fold-seed).", ge=0)
    fold_seed: int | None = setting(None, "Seed for the fold split and --max-train-samples' subsample [default: "
                                          "--seed]. Runs that share it share their folds, so their OOF predictions "
                                          "blend row for row (kit train --seeds sets it to the first seed).", ge=0)
    full_train: bool = setting(False, "After the CV folds, train one more model on every row, with no validation, "
                                      "for the folds' median best step (as a fraction of the schedule, scaled to "
                                      "all rows); saved as fold K (fold<K>.safetensors) and averaged with the "
                                      "folds by kit predict, ensembles and bundles. Adding it to a finished run "
                                      "with --resume trains only that model.")
    pseudo: str | None = setting(None, "Pseudo-labelled rows (a kit pseudo-label file) added to every fold's "
                                       "training rows, never to a validation fold; rows whose text is a labelled "
                                       "row's are dropped.", metavar="FILE")
    pseudo_weight: float = setting(1.0, "Loss weight of the pseudo-labelled batches (labelled batches weigh 1).",
                                   gt=0)
    pseudo_stage: PseudoStage = setting("mix", "mix: pseudo batches shuffled among the labelled ones; pretrain: one "
                                               "pass over the pseudo rows first, then the labelled epochs.")
    distill: str | None = setting(None, "Teachers' OOF predictions: a run folder or an OOF file (a run's oof.csv, or "
                                        "any CSV of the id column and one prediction per output column), several "
                                        "comma-separated (averaged: an ensemble teacher). Regression/binary "
                                        "targets: each training row's target becomes (1 - w) x label + w x the "
                                        "teacher's prediction. Multi-class targets (a linear or label-token head): "
                                        "the loss becomes (1 - w) x cross-entropy + w x T^2 x KL(teacher || "
                                        "student) at temperature T. Rows without a teacher prediction keep their "
                                        "label.", metavar="TEACHERS")
    distill_weight: float = setting(0.5, "w of --distill: how much of the target (or loss) is the teacher's.",
                                    gt=0, le=1)
    distill_temperature: float = setting(2.0, "T of --distill for multi-class targets: both distributions are "
                                              "softened by T before the KL term.", gt=0)
    input_format: str | None = setting(None, "How a row becomes model input [default: the competition's first].",
                                       metavar="NAME")
    window_len: int | None = setting(None, "Sliding windows: inputs longer than this many tokens are cut into "
                                           "overlapping windows whose token states are stitched back (overlaps "
                                           "averaged) before pooling, in training and inference [default: the "
                                           "model's position limit when --max-len exceeds it].", ge=8)
    window_stride: int | None = setting(None, "Tokens between the starts of consecutive windows [default: half "
                                              "the window].", ge=1)
    max_train_samples: int | None = setting(None, "Train on a seeded subsample of this many rows.", ge=1)
    device: str = setting("auto", "Where to train: auto (a GPU if there is one), cpu, cuda, cuda:1, ...",
                          pattern=DEVICE_PATTERN, resume_safe=True, metavar="auto|cpu|cuda|cuda:N")
    threads: int | None = setting(None, "CPU threads for torch [default: all cores]; on a machine other jobs "
                                        "share, use fewer than the free cores. Split between --fold-workers.",
                                  ge=1, resume_safe=True)
    stop_after_hours: float | None = setting(None, "Session limit: before each fold, stop if the slowest fold of this "
                                                   "launch would end past this many hours from its start; the run is "
                                                   "left partial and resumable (--resume trains the rest). kit remote "
                                                   "sets it under Kaggle's 12 h GPU session.",
                                             gt=0, resume_safe=True, metavar="H")
    tracker: Tracker | None = setting(None, "Also log the run to an experiment tracker, offline by default: mlflow "
                                            "(RUN/mlruns or MLFLOW_TRACKING_URI), wandb (RUN/wandb, offline unless "
                                            "WANDB_MODE=online), tensorboard (RUN/tensorboard). Needs the extra of "
                                            "the same name.", resume_safe=True)
    fold_workers: int = setting(1, "Folds trained at once, each in its own process, into one run folder: one per "
                                   "GPU of --devices, or on CPU sharing --threads. Same results as one at a time.",
                                ge=1, resume_safe=True)
    devices: GpuList | None = setting(None, "GPUs for --fold-workers or --nproc-per-node, e.g. 0,1 [default: every "
                                            "visible GPU].", metavar="LIST", resume_safe=True)
    nproc_per_node: int = setting(1, "Data-parallel processes per fold on this machine: relaunches the command "
                                     "under torchrun (the same as `torchrun --nproc-per-node N -m kaggle_kit "
                                     "train ...`). The effective batch is batch size x grad accum x processes.",
                                  ge=1, resume_safe=True)
    # Recorded from the launch (torchrun's WORLD_SIZE): it sets the effective batch, so --resume needs the same.
    world_size: int = setting(1, "Data-parallel processes the run was trained with (recorded).", flag=False, ge=1)
    extra: dict[str, Any] = setting({}, "Plugin options (config file only), e.g. {cpc_titles: PATH}.", flag=False)
    # Recorded when the run starts, so an old run predicts the same way whatever its plugin says today.
    competition_version: str | None = setting(None, "The plugin's version when the run started.", flag=False)
    base_model: dict[str, Any] | None = setting(None, "With --lora-r: the identity of the base model the adapters "
                                                      "belong to (config and weight-file hashes).", flag=False)
    targets: TargetRecords | None = setting(None, "The plugin's targets when the run started: name, kind and the "
                                                  "classes in output order.", flag=False)

    @model_validator(mode="after")
    def _check_together(self) -> TrainConfig:
        if self.train_folds is not None:
            if not self.train_folds:
                raise ValueError("--train-folds: is empty")
            for fold in self.train_folds:
                if not 0 <= fold < self.folds:
                    raise ValueError(f"--train-folds: fold {fold} does not exist with --folds {self.folds} "
                                     f"(use 0..{self.folds - 1})")
        if self.max_train_samples is not None and self.max_train_samples < 2 * self.folds:
            raise ValueError(f"--max-train-samples {self.max_train_samples} with --folds {self.folds}: each fold "
                             f"needs at least 2 validation rows (use --max-train-samples >= {2 * self.folds} "
                             f"or fewer --folds)")
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("--load-in-4bit and --load-in-8bit: choose one")
        if (self.load_in_4bit or self.load_in_8bit) and self.lora_r == 0:
            raise ValueError(f"--load-in-{4 if self.load_in_4bit else 8}bit: quantised weights cannot be trained "
                             f"directly; add adapters with --lora-r (e.g. 16)")
        if self.lora_r > 0 and self.fgm_eps > 0:
            raise ValueError("--fgm-eps: FGM perturbs the word embeddings along their gradient, and with --lora-r "
                             "the embeddings are frozen (no gradient): FGM would do nothing; drop one of them")
        if self.lora_r > 0 and self.reinit_layers > 0:
            raise ValueError("--reinit-layers: with --lora-r the base weights are frozen, so re-initialised layers "
                             "would stay random; drop one of them")
        if self.lora_r > 0 and (self.freeze_embeddings or self.freeze_layers):
            raise ValueError("--freeze-embeddings/--freeze-layers: with --lora-r every base weight is already frozen "
                             "(only adapters and the head train); drop the freeze option")
        if self.fold_workers > 1 and self.nproc_per_node > 1:
            raise ValueError(f"--fold-workers {self.fold_workers} with --nproc-per-node {self.nproc_per_node}: "
                             f"choose one (whole folds in parallel, or one fold data-parallel)")
        if self.window_stride is not None and self.window_len is not None and self.window_stride > self.window_len:
            raise ValueError(f"--window-stride {self.window_stride}: above --window-len {self.window_len}, tokens "
                             f"between windows would never be seen")
        if self.head == "label-tokens" and self.mode == "frozen":
            raise ValueError("--head label-tokens with --mode frozen: the frozen mode fits a ridge output layer; "
                             "use --mode finetune (with --lora-r for a big decoder)")
        if self.tail_tokens >= self.max_len:
            raise ValueError(f"--tail-tokens {self.tail_tokens}: must be below --max-len {self.max_len} (the input's "
                             f"start, with its first special token, needs room too)")
        if self.awp_lr > 0 and self.awp_start_epoch >= self.epochs:
            raise ValueError(f"--awp-start-epoch {self.awp_start_epoch}: AWP would never run with --epochs "
                             f"{self.epochs} (epochs count from 0: use 0..{self.epochs - 1})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def effective_batch_size(self) -> int:
        """Rows per optimizer step over all data-parallel processes."""
        return self.batch_size * self.grad_accum * self.world_size

    def fold_list(self) -> list[int]:
        return sorted(self.train_folds) if self.train_folds is not None else list(range(self.folds))

    @property
    def split_seed(self) -> int:
        """The seed of the row subsample and the fold split."""
        return self.seed if self.fold_seed is None else self.fold_seed

    @property
    def full_fold(self) -> int:
        """The fold number under which the full-train model is saved: K, after the CV folds 0..K-1."""
        return self.folds


FIELDS = TrainConfig.model_fields


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_info(name: str) -> dict[str, Any]:
    return FIELDS[name].json_schema_extra or {}


def choices(name: str) -> tuple[str, ...] | None:
    """The allowed values of a Literal field (also inside `X | None`), else None."""
    annotation = FIELDS[name].annotation
    for candidate in (annotation, *get_args(annotation)):
        if get_origin(candidate) is Literal:
            return get_args(candidate)
    return None


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


# ---- checking values --------------------------------------------------------------------------------------------

_ADAPTERS: dict[str, TypeAdapter] = {}


def _adapter(name: str) -> TypeAdapter:
    """Validates one field alone: its type and bounds, without the checks that need other fields."""
    if name not in _ADAPTERS:
        info = FIELDS[name]
        annotation = info.annotation
        if info.metadata:
            annotation = Annotated.__class_getitem__((annotation, *info.metadata))
        _ADAPTERS[name] = TypeAdapter(annotation)
    return _ADAPTERS[name]


def _describe(name: str, value: Any, error: dict[str, Any]) -> str:
    """A pydantic error as the one line a user needs: what was given, what is allowed."""
    kind, ctx = error["type"], error.get("ctx", {})
    allowed = choices(name)
    why = field_info(name).get("why")
    if kind == "literal_error" and allowed:
        return f"{value!r} is unknown; choose one of: {', '.join(allowed)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {"greater_than_equal": "at least", "greater_than": "above", "less_than_equal": "at most",
                 "less_than": "below"}[kind]
        limit = next(iter(ctx.values()))
        return f"must be {words} {limit} (got {value}){': ' + why if why else ''}"
    if kind == "string_pattern_mismatch" and name == "device":
        return f"{value!r} is not a device (auto, cpu, cuda, cuda:N)"
    expected = {"int_parsing": "a whole number", "int_from_float": "a whole number", "float_parsing": "a number",
                "bool_parsing": "true or false", "list_type": "a list", "dict_type": "a mapping",
                "string_type": "text"}.get(kind)
    if expected:
        return f"{value!r} is not {expected}"
    return f"{value!r}: {error['msg']}"


def check_value(name: str, value: Any, source: str) -> Any:
    """One field's value, converted and bounds-checked; a bad value is a one-line KitError naming `source`."""
    try:
        return _adapter(name).validate_python(value)
    except ValidationError as err:
        first = err.errors()[0]
        shown = first.get("input", value) if first["loc"] else value
        where = option_name(name) if source == "command line" else f"{source}: {name}"
        raise KitError(f"{where}: {_describe(name, shown, first)}") from None


def unknown_setting(key: str, source: str) -> KitError:
    close = difflib.get_close_matches(key.replace("-", "_"), list(FIELDS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(FIELDS)})"
    return KitError(f"{source}: unknown setting {key!r}{hint}")


def checked_values(values: dict[str, Any], source: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise unknown_setting(key, source)
        out[name] = check_value(name, value, source)
    return out


def build(values: dict[str, Any], source: str) -> TrainConfig:
    """A TrainConfig from already layered values; a failed cross-field check is one line."""
    try:
        return TrainConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        message = str(first.get("ctx", {}).get("error", first["msg"]))
        raise KitError(message if message.startswith("--") else f"{source}: {message}") from None


def from_dict(values: dict[str, Any], source: str) -> TrainConfig:
    """A saved run_config.json (or any mapping of settings) as a checked TrainConfig."""
    return build(checked_values(values, source), source)


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


def layers(competition: str, competition_presets: dict[str, dict[str, Any]], preset: str | None,
           config_file: str | Path | None, flags: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(source, checked values) per layer, lowest first: preset, the competition's preset, file, flags."""
    file_values = load_config_file(config_file) if config_file else {}
    preset = flags.get("preset") or preset or file_values.get("preset")
    out: list[tuple[str, dict[str, Any]]] = []
    if preset:
        if preset not in PRESETS and preset not in competition_presets:
            known = sorted(set(PRESETS) | set(competition_presets))
            raise KitError(f"--preset {preset!r} is unknown; choose one of: {', '.join(known)}")
        out.append((f"preset {preset}", checked_values(PRESETS.get(preset, {}), f"preset {preset}")))
        out.append((f"preset {preset} ({competition})",
                    checked_values(competition_presets.get(preset, {}), f"preset {preset} ({competition})")))
        out.append(("--preset", {"preset": preset}))
    out.append((f"--config {config_file}", checked_values(
        {k: v for k, v in file_values.items() if k != "preset"}, f"--config {config_file}")))
    out.append(("command line", checked_values(
        {k: v for k, v in flags.items() if v is not None and k != "preset"}, "command line")))
    return out


def resolve(competition: str, competition_presets: dict[str, dict[str, Any]], preset: str | None,
            config_file: str | Path | None, flags: dict[str, Any]) -> TrainConfig:
    """Layer defaults, preset, config file and flags, then check the settings together."""
    merged: dict[str, Any] = {}
    for _, values in layers(competition, competition_presets, preset, config_file, flags):
        merged.update(values)
    merged["competition"] = competition
    return build(merged, "settings")


def resume_changes(recorded: TrainConfig, requested: dict[str, Any]) -> dict[str, Any]:
    """The settings `--resume` may change, checked; any other setting that differs from the run is an error.

    Only settings that cannot change results pass: device, threads, eval batch size, the data folder (its
    train.csv is hash-checked), how the work is spread (fold workers, GPUs) and a subset of the run's folds.
    """
    allowed = {}
    for name, value in requested.items():
        if name in ("competition", "preset") or value == getattr(recorded, name):
            continue
        if name == "full_train" and value:
            pass  # adds the full-train model to the run; the CV folds stay as they are
        elif name == "train_folds":
            if not set(value) <= set(recorded.fold_list()):
                raise KitError(f"--resume: --train-folds {','.join(map(str, value))} is not a subset of the run's "
                               f"folds {','.join(map(str, recorded.fold_list()))}")
        elif not field_info(name).get("resume_safe"):
            raise KitError(f"--resume: {option_name(name)} {_show(value)} would change the run, which was trained "
                           f"with {option_name(name)} {_show(getattr(recorded, name))}; drop the flag, or start a "
                           f"new run without --resume")
        allowed[name] = value
    return allowed


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "(none)" if value is None else str(value)


# ---- the command line and the README, derived from the fields -----------------------------------------------------

def cli_parameters() -> list[tuple[str, type, Any, str, str | None]]:
    """(name, type, default, flag declaration, metavar) for each setting the command line takes."""
    params = []
    for name, info in FIELDS.items():
        extra = field_info(name)
        if not extra.get("flag", True):
            continue
        annotation = info.annotation
        base = next((a for a in (annotation, *get_args(annotation)) if a in (int, float, bool)), str)
        allowed = choices(name)
        metavar = extra.get("metavar") or ("|".join(allowed) if allowed else {int: "N", float: "X"}.get(base))
        flag = option_name(name)
        declaration = f"{flag}/--no-{flag[2:]}" if base is bool else flag
        params.append((name, base, None, declaration, metavar))
    return params


def help_text(name: str) -> str:
    """The option's help: its description, then default and bounds, all from the declaration."""
    info = FIELDS[name]
    notes = []
    if "[default:" not in (info.description or "") and info.default not in (None, {}):
        notes.append(f"default: {_show(info.default)}")
    if not choices(name) and allowed_text(name):
        notes.append(allowed_text(name))
    text = (info.description or "") + (f" [{'; '.join(notes)}]" if notes else "")
    if field_info(name).get("resume_safe"):
        text += " (may change on --resume)"
    return text


def allowed_text(name: str) -> str:
    """What a setting accepts, from its declaration: its choices, or its numeric bounds."""
    allowed = choices(name)
    if allowed:
        return " | ".join(allowed)
    words = {"Ge": ">=", "Gt": ">", "Le": "<=", "Lt": "<"}
    parts = [f"{words[type(m).__name__]} {getattr(m, type(m).__name__.lower())}" for m in FIELDS[name].metadata
             if type(m).__name__ in words]
    return ", ".join(parts)


def options_table() -> str:
    """The README's table of `kit train` settings, generated from the fields (a test keeps the README current)."""
    rows = ["| option | default | allowed | what it does |", "| --- | --- | --- | --- |"]
    for name, _, _, declaration, metavar in cli_parameters():
        info = FIELDS[name]
        default = "" if info.default is None else f"`{_show(info.default)}`"
        text = (info.description or "").replace("|", "\\|")
        if field_info(name).get("resume_safe"):
            text += " May change on `--resume`."
        shown = declaration.split("/")[0] + (f" {metavar}" if metavar and not choices(name) else "")
        allowed = allowed_text(name).replace("|", "\\|")
        rows.append(f"| `{shown}` | {default} | {allowed} | {text} |")
    return "\n".join(rows)


def write_readme_table(readme: Path) -> bool:
    """Replace the README's generated options table; True when it changed."""
    start, end = "<!-- options-table:start -->", "<!-- options-table:end -->"
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise KitError(f"{readme}: no {start} ... {end} markers to put the options table between")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    new = f"{before}{start}\n{options_table()}\n{end}{after}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # python -m kaggle_kit.config --readme [README.md]: regenerate the options table
    import sys

    if sys.argv[1:2] == ["--readme"]:
        target = Path(sys.argv[2] if len(sys.argv) > 2 else "README.md")
        print(f"{target}: {'updated' if write_readme_table(target) else 'already current'}")
    else:
        print(options_table())
