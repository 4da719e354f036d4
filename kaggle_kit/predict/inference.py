"""Inference: the code path shared by validation, `kit predict` and the generated Kaggle notebook."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from kaggle_kit.competition import Competition, InputContext
from kaggle_kit.config import TrainConfig
from kaggle_kit.data.batching import tokenize
from kaggle_kit.data.load import find_extra_files
from kaggle_kit.data.loader import CPU_BATCH_TOKENS, inference_batches, inference_plans
from kaggle_kit.device import autocast, inference_dtype, pick_device
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.models.lora import AdapterSpec, merge_adapters, trainable_state
from kaggle_kit.models.model import KitModel, build_model, label_tokens_of, load_backbone_config, window_of
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.tasks.losses import apply_link, get_loss
from kaggle_kit.tasks.postprocess import apply_record
from kaggle_kit.tasks.targets import Target, output_weights

log = logging.getLogger(__name__)


@torch.inference_mode()
def infer(model: KitModel, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device: torch.device,
          dtype: torch.dtype | None, desc: str | None = None, max_tokens: int | None = None) -> np.ndarray:
    """Raw model outputs (before the loss's link), in the order of `ids`, computed in length-sorted batches (of at
    most `max_tokens` padded tokens each, when given; on a CPU at most CPU_BATCH_TOKENS when not).

    Outputs stay on the device until the end: one copy back instead of a wait for the device after every batch.
    """
    model.eval()
    if max_tokens is None and device.type == "cpu":
        max_tokens = CPU_BATCH_TOKENS
    rows, outputs = [], []
    plans = inference_plans([len(x) for x in ids], batch_size, max_tokens)
    batches = inference_batches(ids, pad_id, plans, device)
    for plan, batch in tqdm(batches, total=len(plans), desc=desc, disable=desc is None, leave=False, unit="batch"):
        with autocast(device, dtype):
            outputs.append(model(**batch).float())
        rows.extend(plan.rows)
    out = np.zeros((len(ids), model.fc.out_features), dtype=np.float32)
    if outputs:
        out[rows] = torch.cat(outputs).cpu().numpy()
    return out


def load_tokenizer(path: str | Path):
    from kaggle_kit.startup import frozen_imports

    with frozen_imports():
        from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_fold_model(run: RunDir, cfg: TrainConfig, n_outputs: int, fold: int, device: torch.device,
                    base_model: Path | None = None, merge: bool = False, quantize: str | None = None) -> KitModel:
    """A fold's model on `device`, built with its parameters on the meta device and the weights assigned straight
    from the file (on a GPU, read straight onto it): no random initialisation of a backbone that is overwritten
    next, no second copy of the weights. A LoRA fold holds only adapters and the head: they go onto the run's base
    model (checked against the identity the run recorded), held in the inference dtype, and with `merge` are folded
    into the base weights (W + BA: no adapter matmuls per layer at inference). `quantize` ("int8", CPU only)
    quantises the backbone's linear layers; in fp32 on a CPU they run on oneDNN's prepacked kernels
    (predict/cpu_packing.py), a LoRA fold's once merged."""
    from safetensors.torch import load_file

    path = run.weights(fold)
    backbone_config = load_backbone_config(run.backbone, cfg.backbone_dropout)
    adapters = AdapterSpec.of(cfg)
    if adapters is not None:
        base = lora_base(cfg, base_model)
        dtype = inference_dtype(cfg.precision, device) or torch.float32
        quantization, device_map = lora_placement(cfg, base, device, dtype)
        model = build_model(backbone_config, n_outputs, cfg.pooling, cfg.pooling_layers, cfg.head_dropout,
                            weights_from=base, dtype=dtype, adapters=adapters, quantization=quantization,
                            device=device, device_map=device_map, trainable=False, window=window_of(cfg),
                            label_tokens=label_tokens_of(cfg))
    else:
        model = build_model(backbone_config, n_outputs, cfg.pooling, cfg.pooling_layers, cfg.head_dropout,
                            window=window_of(cfg), empty=True, label_tokens=label_tokens_of(cfg))
    try:
        if adapters is None:
            model.load_state_dict(load_file(str(path), device=str(device)), assign=True)
        else:
            state = load_file(str(path))
            missing = set(trainable_state(model)) - set(state)
            unexpected = set(state) - set(model.state_dict())
            if missing or unexpected:
                raise RuntimeError(f"adapter keys differ: {len(missing)} missing, {len(unexpected)} unexpected, "
                                   f"e.g. {sorted(missing or unexpected)[0]}")
            model.load_state_dict(state, strict=False)
    except Exception as err:  # SafetensorError (a damaged file) or torch's RuntimeError (another model's weights)
        first = " ".join(str(err).split())[:200]
        raise KitError(f"{path}: cannot load these fold weights ({first}); the file is damaged or belongs to "
                       f"another model: retrain the fold (kit train --resume) or restore the file") from None
    if merge and adapters is not None:
        model = merge_adapters(model)
    model = model.place(device).eval()
    if quantize is not None and device.type == "cpu":
        from kaggle_kit.predict.quantize import quantize_model

        model = quantize_model(model, quantize)
    elif device.type == "cpu" and (adapters is None or merge):  # merged: plain fp32 layers; unmerged: peft's own
        from kaggle_kit.predict.cpu_packing import pack_for_cpu

        pack_for_cpu(model)
    return model


def release_memory(device: torch.device) -> None:
    """Free a fold model before the next one loads: peft wrappers and device_map hooks hold reference cycles, so
    `del` alone leaves the weights (a whole 16-bit base) in memory until the cyclic collector happens to run."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def split_over_gpus(model_bytes: int, gpu_bytes: Sequence[int]) -> bool:
    """Whether a model must be split layer by layer over the GPUs: it does not fit the first with headroom, but
    it fits all of them together (the same rule the bundle's time projection lays models out by)."""
    from kaggle_kit.accelerators import GIB, fits_one_gpu, fits_split

    if len(gpu_bytes) < 2 or fits_one_gpu(model_bytes / GIB, gpu_bytes[0] / GIB):
        return False
    return fits_split(model_bytes / GIB, [b / GIB for b in gpu_bytes])


def lora_placement(cfg: TrainConfig, base: Path, device: torch.device, dtype: torch.dtype):
    """How a LoRA fold's base is held at inference: in the 4/8 bits it was trained in on CUDA (the OOF
    predictions were made that way), else in `dtype`; on one GPU when it fits, split over all of them when not."""
    from kaggle_kit.models.lora import quantization_config

    quantised = cfg.load_in_4bit or cfg.load_in_8bit
    if device.type != "cuda":
        if quantised:
            log.warning("%s: trained on a %d-bit base, predicted on %s with a %s base (bitsandbytes needs CUDA): "
                        "predictions differ slightly from the OOF ones", cfg.model, 4 if cfg.load_in_4bit else 8,
                        device, str(dtype).removeprefix("torch."))
        return None, None
    quantization = quantization_config(cfg.load_in_4bit, cfg.load_in_8bit, device, dtype) if quantised else None
    bytes_per = 0.56 if cfg.load_in_4bit else 1 if cfg.load_in_8bit else torch.finfo(dtype).bits // 8
    model_bytes = int(sum(f["size"] for f in (cfg.base_model or {}).get("files", {}).values()) / 2 * bytes_per)
    gpus = [torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())]
    if split_over_gpus(model_bytes, gpus):
        log.info("%s: %.1f GiB of weights split over %d GPUs", base.name, model_bytes / 1024**3, len(gpus))
        return quantization, "balanced"
    return quantization, None


def lora_base(cfg: TrainConfig, base_model: Path | None) -> Path:
    """The base model folder of a LoRA run: `--base-model DIR`, else where training found it; refused unless it is
    the base the run recorded (config, sizes, and chunks spread over every weight file)."""
    from kaggle_kit.models.identity import check_base_model

    folder = Path(base_model) if base_model else (Path(cfg.model) if cfg.model else None)
    if folder is None or not folder.is_dir():
        raise KitError(f"this LoRA run needs its base model ({(cfg.base_model or {}).get('name')}): "
                       f"{folder or 'no path recorded'} is not there; pass --base-model DIR")
    if cfg.base_model:
        check_base_model(folder, cfg.base_model)
    return folder


def build_model_inputs(comp: Competition, df: pd.DataFrame, tokenizer, cfg: TrainConfig, data_dir: Path | None,
                       files: dict[str, Path], split: str = "test", cut: list[bool] | None = None
                       ) -> list[list[int]]:
    """Token ids per row, built by the plugin with the run's own input format, seed and extra files; `split` says
    whether the rows are train.csv's or test.csv's (per-row files live in data_dir/train/ or data_dir/test/);
    `cut` receives per row whether --max-len cut it."""
    ctx = input_context(comp, tokenizer, cfg, data_dir, files, split)
    texts, tail = comp.build_inputs(df, ctx), cfg.tail_tokens
    if cfg.head != "label-tokens":
        return tokenize(tokenizer, texts, cfg.max_len, tail_tokens=tail, cut=cut)
    # the answer cue ends every prompt, a cut input keeps it, and a closing token the tokenizer appends ([SEP], an
    # end-of-sequence) is dropped: the label word is read right after the cue
    texts = [text + cfg.label_cue for text in texts]
    cue = len(tokenizer(cfg.label_cue, add_special_tokens=False)["input_ids"])
    closing = appended_suffix(tokenizer)
    ids = tokenize(tokenizer, texts, cfg.max_len, tail_tokens=min(max(tail, cue + len(closing) + 1), cfg.max_len - 1),
                   cut=cut)
    return [x[:len(x) - len(closing)] if closing and x[len(x) - len(closing):] == closing else x for x in ids]


def appended_suffix(tokenizer) -> list[int]:
    """The special tokens the tokenizer appends after a text ([SEP] for BERT's, none for most decoders')."""
    plain = tokenizer("label", add_special_tokens=False)["input_ids"]
    full = tokenizer("label")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[start + len(plain):]
    return []


def input_context(comp: Competition, tokenizer, cfg: TrainConfig, data_dir: Path | None, files: dict[str, Path],
                  split: str = "test") -> InputContext:
    """What the plugin's input builder gets for a run's rows (also used to find test rows it cannot build)."""
    return InputContext(sep_token=tokenizer.sep_token or "[SEP]",
                        input_format=cfg.input_format or comp.input_formats[0], seed=cfg.seed,
                        data_dir=data_dir, options=cfg.extra, files=files, chat=chat_renderer(tokenizer), split=split)


def chat_renderer(tokenizer):
    """Messages -> prompt text with the tokenizer's chat template (saved with the run's tokenizer, so a run keeps
    the template it was trained with), without a leading BOS the tokenizer adds anyway; "role: content" lines where
    the tokenizer has no template."""

    bos = getattr(tokenizer, "bos_token", None)
    adds_bos = bool(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]

    def render(messages: list[dict[str, str]]) -> str:
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
            # Gemma's and Llama-3's templates start with <bos>, which tokenizing adds again: one is enough
            return text[len(bos):] if adds_bos and text.startswith(bos) else text
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    return render


def run_targets(comp: Competition, cfg: TrainConfig, where: Path) -> list[Target]:
    """The targets as the run was trained (its recorded class order), checked against the plugin's: a run whose
    outputs mean something else today is refused by name rather than mislabelled."""
    if not cfg.targets:
        return list(comp.schema.targets)
    plugin = {t.name: t for t in comp.schema.targets}
    recorded = []
    for record in cfg.targets:
        target = plugin.get(record["name"])
        if target is None or target.kind != record.get("kind", "regression"):
            now = f"is {target.kind}" if target is not None else "no longer exists"
            raise KitError(f"{where}: trained for the {record.get('kind', 'regression')} target {record['name']!r}, "
                           f"which {now} in the {comp.name} plugin; predict with the plugin version it was trained "
                           f"with")
        classes = tuple(record.get("classes") or target.classes)
        if sorted(map(str, classes)) != sorted(map(str, target.classes)):
            raise KitError(f"{where}: trained on the classes {', '.join(map(str, classes))} of {target.name!r}; the "
                           f"plugin now has {', '.join(map(str, target.classes))}")
        recorded.append(dataclasses.replace(target, classes=classes))
    missing = sorted(set(plugin) - {t.name for t in recorded})
    if missing:
        raise KitError(f"{where}: has no output for the target(s) {', '.join(missing)} the {comp.name} plugin now has")
    return recorded


def in_plugin_order(pred: np.ndarray, trained: Sequence[Target], comp: Competition) -> np.ndarray:
    """A run's prediction columns rearranged into the plugin's target and class order."""
    keys = [(t.name, c) for t in trained for c in t.output_columns]
    wanted = [(t.name, c) for t in comp.schema.targets for c in t.output_columns]
    if keys == wanted:
        return pred
    return pred[:, [keys.index(k) for k in wanted]]


def run_files(comp: Competition, run: RunDir, cfg: TrainConfig, data_dir: Path | None) -> dict[str, Path]:
    """The plugin's extra files as the run carries them; runs made before runs carried them look where training
    found them (the config's `extra` paths, then the test data folder)."""
    carried = {extra.name: run.extra_file(extra.name) for extra in comp.extra_files}
    if all(path.is_file() for path in carried.values()):
        return carried
    return find_extra_files(comp, data_dir, cfg.extra)


def check_run_for(comp: Competition, run: RunDir) -> TrainConfig:
    """The run's config, refused by name when the run belongs to another competition."""
    cfg = run.load_config()
    if cfg.competition != comp.name:
        raise KitError(f"--run {run.path}: a run of {cfg.competition!r}, not of {comp.name!r}; predict it with "
                       f"`kit predict {cfg.competition}`")
    if cfg.competition_version is not None and cfg.competition_version != comp.version:
        log.warning("%s: trained with %s plugin version %s, installed is %s; predicting with the run's recorded "
                    "settings", run.path, comp.name, cfg.competition_version, comp.version)
    return cfg


@dataclass
class PredictionReport:
    """What happened during prediction: which folds ran, how long each took, which were skipped."""

    folds_used: list[tuple[str, int]] = field(default_factory=list)
    folds_skipped: list[tuple[str, int]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # The part of `seconds` spent building and loading the fold's model: it does not grow with the test size.
    load_seconds: dict[str, float] = field(default_factory=dict)
    # With keep_members: each fold model's own predictions (after the link, before blending): (run index, fold, pred)
    keep_members: bool = False
    members: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    # Test-time training: the folds adapted, the folds it was skipped for (time), seconds spent
    test_time: dict = field(default_factory=dict)


# Called before each fold after the first with (folds done, folds total, seconds so far, fold_seconds=mean seconds
# of one fold, parallel=folds running at once); False stops the folds not yet started.
ContinueCheck = Callable[..., bool]


@dataclass
class RunInputs:
    """What predicting one run's folds needs, tokenised once (and sent as is to device workers)."""

    run: RunDir
    cfg: TrainConfig
    folds: list[int]
    ids: list[list[int]]
    pad_id: int
    batch_size: int
    n_outputs: int
    base_model: Path | None = None
    merge: bool = False
    test_time: Any = None  # kaggle_kit.predict.test_time.RunTestTime: the run's test-time training, if any

    @property
    def name(self) -> str:
        return self.run.path.name


def predict_fold(inputs: RunInputs, fold: int, device: torch.device, quantize: str | None = None,
                 desc: bool = True, test_time_share=None) -> tuple[np.ndarray, float, float]:
    """Raw outputs of one fold model on `device`, with (load seconds, total seconds); with the run's test-time
    training, after its steps (within `test_time_share`, a kaggle_kit.predict.test_time.TimeShare)."""
    started = time.monotonic()
    model = load_fold_model(inputs.run, inputs.cfg, inputs.n_outputs, fold, device, inputs.base_model, inputs.merge,
                            quantize)
    loaded = time.monotonic() - started
    dtype = inference_dtype(inputs.cfg.precision, device)
    if inputs.test_time is not None and test_time_share is not None:
        from kaggle_kit.predict.test_time import adapt_fold

        adapt_fold(model, inputs.test_time, inputs.pad_id, inputs.batch_size, device, dtype, test_time_share,
                   f"{inputs.name} fold {fold}")
    raw = infer(model, inputs.ids, inputs.pad_id, inputs.batch_size, device, dtype,
                desc=f"{inputs.name} fold {fold}" if desc else None, max_tokens=inputs.cfg.eval_max_tokens)
    del model
    release_memory(device)
    return raw, loaded, time.monotonic() - started


@dataclass
class PlannedRun:
    """One run as prediction will use it: checked, with the folds to predict and its blend weight (per output)."""

    run: RunDir
    cfg: TrainConfig
    folds: list[int]
    trained: list[Target]
    weight: np.ndarray


def plan_runs(comp: Competition, run_paths: Sequence[Path],
              weights: Sequence[float | Sequence[float]] | None = None,
              folds: Sequence[Sequence[int]] | None = None, merge_lora: bool = False) -> list[PlannedRun]:
    """Which runs and folds to predict, every check made before a model is loaded: each run's competition first,
    then its folds (every finished one, or `folds`) against the weight files recorded at save."""
    weights = list(weights) if weights is not None else [1.0 / len(run_paths)] * len(run_paths)
    if len(weights) != len(run_paths):
        raise KitError(f"{len(weights)} ensemble weights for {len(run_paths)} runs")
    # a weight is one number per run, or one per target (a `kit ensemble` file's per-target weights)
    weights = [output_weights(w, comp.schema.targets) for w in weights]
    if folds is not None and len(folds) != len(run_paths):
        raise KitError(f"{len(folds)} fold lists for {len(run_paths)} runs")
    plan = []
    for i, path in enumerate(run_paths):
        run = RunDir(Path(path))
        cfg = check_run_for(comp, run)  # first: a run of another competition is named as that, whatever else is wrong
        if folds is None:
            run_folds = run.select_folds()
            status = run.load_manifest().get("status")
            if run_folds and status != "complete":
                log.warning("%s: run status is %r, predicting with its finished folds %s", run.path, status, run_folds)
        elif run.finished_folds():
            run_folds = run.select_folds(folds[i])
        else:  # a bundle's model folder holds the weights alone; the notebook checks them against the bundle manifest
            run_folds = list(folds[i])
            missing = [f for f in run_folds if not run.weights(f).is_file()]
            if missing:
                raise KitError(f"{run.weights(missing[0])}: file not found")
        if not run_folds:
            raise KitError(f"{run.path}: no finished folds (folds/foldN.json) to predict with")
        if merge_lora and (cfg.load_in_4bit or cfg.load_in_8bit):
            raise KitError(f"{run.path}: --merge: this run holds its base in {4 if cfg.load_in_4bit else 8} bits; "
                           f"merging re-quantises the weights and changes the predictions: predict unmerged")
        plan.append(PlannedRun(run, cfg, run_folds, run_targets(comp, cfg, run.path), weights[i]))
    return plan


def predict_plan(comp: Competition, df: pd.DataFrame, plan: Sequence[PlannedRun], device: str = "auto",
                 batch_size: int | None = None, data_dir: Path | None = None,
                 should_continue: ContinueCheck | None = None, clock: Callable[[], float] = time.monotonic,
                 report: PredictionReport | None = None, base_model: Path | None = None, merge_lora: bool = False,
                 devices: Sequence[int] | None = None, workers: int | None = None,
                 quantize: str | None = None, test_time=None, test_time_seconds: float = float("inf"),
                 deadline_left: Callable[[], float] | None = None) -> dict[tuple[int, int], np.ndarray]:
    """Raw outputs of the planned folds, keyed by (run index, fold): the folds spread over the devices, stopped
    early when `should_continue` says so (at least one fold always runs). `test_time` (a TestTimeConfig) adapts
    each fold model on the test first, its steps of all folds within `test_time_seconds` and, when given, the
    seconds `deadline_left` says the notebook has left."""
    from kaggle_kit.predict import parallel
    from kaggle_kit.predict.quantize import applies, check_mode

    report = report if report is not None else PredictionReport()
    torch_device = pick_device(device)
    slots = parallel.inference_slots(torch_device, devices, workers)
    quantize = check_mode(quantize) if applies(check_mode(quantize), torch_device) else None
    total = sum(len(p.folds) for p in plan)
    if len(slots) > 1 and any(AdapterSpec.of(p.cfg) is not None for p in plan):
        log.info("LoRA runs: predicting in this process on %s (a large base is split over every GPU instead)",
                 torch_device)
        slots = [parallel.Slot(torch_device, torch.get_num_threads())]
    share = None
    if test_time is not None and test_time.enabled:
        from kaggle_kit.predict.test_time import TimeShare

        test_time.check_quantize(quantize)
        share = TimeShare(test_time_seconds, deadline_left=deadline_left)
        slots = slots[:1]  # the steps of every fold share one time allowance
    start = clock()
    inputs = []
    for p in plan:
        tokenizer = load_tokenizer(p.run.tokenizer)
        files = run_files(comp, p.run, p.cfg, data_dir)
        ids = build_model_inputs(comp, df, tokenizer, p.cfg, data_dir, files)
        item = RunInputs(p.run, p.cfg, p.folds, ids, tokenizer.pad_token_id or 0,
                         batch_size or p.cfg.eval_batch_size, comp.n_outputs, base_model, merge_lora)
        if share is not None:
            from kaggle_kit.predict.test_time import prepare_run

            item.test_time = prepare_run(
                comp, df, test_time, ids, p.trained, get_loss(p.cfg.loss or comp.default_loss, comp.losses),
                lambda rows, tok=tokenizer, cfg=p.cfg, files=files: build_model_inputs(comp, rows, tok, cfg,
                                                                                        data_dir, files),
                Path(data_dir or ".") / "test.csv")
        inputs.append(item)
    jobs = [(i, fold) for i, item in enumerate(inputs) for fold in item.folds]
    raw_outputs: dict[tuple[int, int], np.ndarray] = {}

    def may_start(done: int) -> bool:
        if not done or should_continue is None:
            return True
        fold_seconds = float(np.mean(list(report.seconds.values())))
        return should_continue(done, total, clock() - start, fold_seconds=fold_seconds, parallel=len(slots))

    def finished(job: tuple[int, int], raw: np.ndarray, load_seconds: float, seconds: float) -> None:
        name = f"{inputs[job[0]].name}/fold{job[1]}"
        raw_outputs[job] = raw
        report.folds_used.append((inputs[job[0]].name, job[1]))
        report.load_seconds[name] = load_seconds
        report.seconds[name] = seconds
        log.info("%s predicted in %.1fs", name.replace("/", " "), seconds)

    if len(slots) == 1:
        for job in jobs:
            if not may_start(len(raw_outputs)):
                break
            fold_start = clock()
            raw, load_seconds, _ = predict_fold(inputs[job[0]], job[1], slots[0].device, quantize,
                                                test_time_share=share)
            finished(job, raw, load_seconds, clock() - fold_start)
    else:
        parallel.predict_folds(slots, inputs, jobs, quantize, may_start, finished)
    report.folds_skipped.extend((inputs[i].name, fold) for i, fold in jobs if (i, fold) not in raw_outputs)
    if share is not None:
        report.test_time = {"seconds": round(share.spent, 3), "skipped_from": share.skipped[:1],
                            "allowance_seconds": None if math.isinf(share.seconds) else share.seconds,
                            "fold_seconds": {name.replace(" fold ", "/fold"): seconds
                                             for name, seconds in share.by_fold.items()}}
    return raw_outputs


def blend_plan(comp: Competition, n_rows: int, plan: Sequence[PlannedRun],
               raw_outputs: dict[tuple[int, int], np.ndarray], report: PredictionReport | None = None,
               postprocess_state: dict | None = None) -> np.ndarray:
    """The loss's link on each fold's raw outputs, folds averaged within a run, runs blended by weight (over the
    runs that predicted at least one fold), then the plugin's post-processing."""
    report = report if report is not None else PredictionReport()
    blended = np.zeros((n_rows, comp.n_outputs), dtype=np.float64)
    used_weight = np.zeros(comp.n_outputs)
    for i, p in enumerate(plan):
        loss_spec = get_loss(p.cfg.loss or comp.default_loss, comp.losses)
        predicted = [fold for fold in p.folds if (i, fold) in raw_outputs]
        fold_preds = [in_plugin_order(apply_link(loss_spec, torch.from_numpy(raw_outputs[i, fold]), p.trained).numpy(),
                                      p.trained, comp) for fold in predicted]
        if report.keep_members:
            report.members.extend((i, fold, pred) for fold, pred in zip(predicted, fold_preds, strict=True))
        if fold_preds:
            blended += p.weight * np.mean(fold_preds, axis=0)
            used_weight += p.weight
    preds = comp.postprocess(blended / used_weight)
    if postprocess_state is None and len(plan) == 1 and plan[0].run.postprocess.is_file():
        postprocess_state = read_json(plan[0].run.postprocess)
    elif postprocess_state is None and len(plan) > 1 and comp.postprocessor is not None:
        from kaggle_kit.predict.ensemble import blended_postprocess

        postprocess_state = blended_postprocess(comp, [p.run.path for p in plan], [p.weight for p in plan])
    where = str(plan[0].run.path) if len(plan) == 1 else "the ensemble"
    return apply_record(comp.postprocessor, postprocess_state, preds, comp.schema.targets, where)


def predict_runs(comp: Competition, df: pd.DataFrame, run_paths: Sequence[Path],
                 weights: Sequence[float | Sequence[float]] | None = None,
                 device: str = "auto", batch_size: int | None = None, data_dir: Path | None = None,
                 should_continue: ContinueCheck | None = None, clock: Callable[[], float] = time.monotonic,
                 report: PredictionReport | None = None, folds: Sequence[Sequence[int]] | None = None,
                 base_model: Path | None = None, postprocess_state: dict | None = None,
                 merge_lora: bool = False, devices: Sequence[int] | None = None, workers: int | None = None,
                 quantize: str | None = None, test_time=None, test_time_seconds: float = float("inf"),
                 deadline_left: Callable[[], float] | None = None) -> np.ndarray:
    """Post-processed predictions (n_rows, n_outputs): folds averaged within a run, runs blended by weight, then
    the plugin's post-processing: its stateless `postprocess`, then its fitted `postprocessor` with the single
    run's own state, or for several runs `postprocess_state` (a bundle's, fitted on the blended OOF predictions)
    or a state fitted here on the runs' blended OOF predictions. Three steps: `plan_runs` (which runs and folds,
    every check), `predict_plan` (the folds over the devices), `blend_plan` (link, fold mean, run blend,
    post-processing).

    Folds (of every run) are spread over the devices: every visible GPU (or `devices`) when predicting on CUDA, or
    `workers` CPU processes sharing the cores; one device predicts in this process. Results do not depend on how
    the folds were spread: each fold is predicted whole on one device, and folds are averaged in their order. LoRA
    runs predict in this process (their base may be split over every GPU).
    Before each fold after the first `should_continue` may stop the remaining work; the folds done so far are still
    used, so a deadline never costs the submission (at least one fold always runs). `folds` names the folds of each
    run to use; a bundle passes them because its model folders hold only the weights, not the per-fold training
    records that `RunDir.finished_folds` looks for. `base_model` is where LoRA runs find their base model when it
    is not where training found it; `merge_lora` folds their adapters into it (refused for 4/8-bit bases, where
    merging re-quantises the weights and changes the outputs). `quantize` ("int8") applies to CPU inference only.
    `test_time` (kaggle_kit.predict.test_time.TestTimeConfig) trains each fold model on the test's labelled examples
    or its own confident pseudo-labels before it predicts, the steps of all folds within `test_time_seconds`.
    """
    report = report if report is not None else PredictionReport()
    plan = plan_runs(comp, run_paths, weights, folds, merge_lora)
    raw_outputs = predict_plan(comp, df, plan, device, batch_size, data_dir, should_continue, clock, report,
                               base_model, merge_lora, devices, workers, quantize, test_time, test_time_seconds,
                               deadline_left)
    return blend_plan(comp, len(df), plan, raw_outputs, report, postprocess_state)
