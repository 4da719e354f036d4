"""K-fold fine-tuning, shared by every competition: the plugin says what, this module says how."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from kaggle_kit.competition import Competition
from kaggle_kit.config import TrainConfig
from kaggle_kit.data.batching import bucketed_batches, collate
from kaggle_kit.data.loader import StageSampler, TokenBatches, make_loader, shard_rows, to_device
from kaggle_kit.device import amp_dtype, autocast, optimizer_step
from kaggle_kit.fileio import atomic_path, write_json
from kaggle_kit.models.lora import AdapterSpec, quantization_config, trainable_state
from kaggle_kit.models.model import (
    KitModel,
    build_model,
    freeze_bottom,
    label_tokens_of,
    llrd_param_groups,
    reinit_top_layers,
    window_of,
)
from kaggle_kit.predict.inference import infer
from kaggle_kit.runs.folder import RunDir, weights_record
from kaggle_kit.runs.monitor import NullMonitor
from kaggle_kit.tasks.losses import DistillLoss, TargetLoss, apply_link, get_loss, initial_bias
from kaggle_kit.train import distributed
from kaggle_kit.train.adversarial import AWP, FGM
from kaggle_kit.train.distributed import SINGLE, Dist, gradient_sync
from kaggle_kit.train.ema import EMA

log = logging.getLogger(__name__)
# Optimizer steps between reading losses and gradient norms back from the device: each read waits for the
# device to finish, so they are collected as tensors and read in one go.
LOG_EVERY = 25


@dataclass
class FoldData:
    """Tokenised inputs and float targets (classes as their index) of one side of a fold."""

    ids: list[list[int]]
    y: np.ndarray
    row_ids: np.ndarray


@dataclass
class Best:
    """The best validation so far in a fold; its weights live on the CPU until the fold ends."""

    score: float
    step: int = -1
    state: dict[str, torch.Tensor] | None = None
    pred: np.ndarray | None = None
    per_target: dict[str, float] = field(default_factory=dict)


@dataclass
class FoldOutcome:
    fold: int
    score: float
    per_target: dict[str, float]
    best_step: int
    seconds: float
    valid_pred: np.ndarray | None
    total_steps: int = 0
    n_pseudo: int = 0


def make_scheduler(optimizer, name: str, warmup_steps: int, total_steps: int):
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    if name == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    if name == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    return get_constant_schedule_with_warmup(optimizer, warmup_steps)


def make_optimizer(model: KitModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the LLRD groups; the fused kernel where this torch has it (5-10x faster steps on CPU,
    which matters when a third of a small model's weights are the word embeddings)."""
    groups = llrd_param_groups(model, cfg.lr, cfg.head_lr, cfg.llrd, cfg.weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, eps=1e-6, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.lr, eps=1e-6)


def eval_points(n_batches: int, per_epoch: int) -> set[int]:
    """Batch indices (1-based) after which to evaluate: evenly spread, always including the last."""
    per_epoch = min(per_epoch, n_batches)
    return {round(n_batches * (i + 1) / per_epoch) for i in range(per_epoch)}


class StepLog:
    """Per-step training loss, learning rate and gradient norm, kept on the device until `flush` reads them all at
    once (one host sync per LOG_EVERY steps instead of two per step). Under DDP the logged loss is the global
    batch's: the ranks' weighted losses averaged."""

    def __init__(self, fold: int, dist: Dist, total_steps: int):
        self.fold = fold
        self.dist = dist
        self.total_steps = total_steps
        self.pending: list[tuple[int, int, torch.Tensor, float, torch.Tensor]] = []
        self.running: float | None = None

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, epoch: int, step: int, loss: torch.Tensor, lr: float, grad_norm: torch.Tensor) -> None:
        self.pending.append((epoch, step, loss, lr, grad_norm))

    def flush(self, bar=None) -> list[dict]:
        if not self.pending:
            return []
        losses = torch.stack([p[2] for p in self.pending])
        if self.dist.active:
            losses = self.dist.all_reduce_sum(losses) / self.dist.world_size
        values, norms = torch.stack([losses.float(), torch.stack([p[4] for p in self.pending]).float()]).tolist()
        rows = []
        for (epoch, step, _, lr, _), value, norm in zip(self.pending, values, norms, strict=True):
            self.running = value if self.running is None else 0.95 * self.running + 0.05 * value
            rows.append({"fold": self.fold, "epoch": epoch, "step": step, "train_loss": value, "lr": lr,
                         "grad_norm": norm, "val_score": np.nan})
        lr = self.pending[-1][3]
        if bar is not None and not bar.disable:
            bar.set_postfix(loss=f"{self.running:.4f}", lr=f"{lr:.2e}")
        elif self.dist.is_main:  # no progress bar (a fold worker, a log file): a line per flush instead
            log.info("fold %d: step %d/%d, loss %.4f, lr %.2e", self.fold, self.pending[-1][1], self.total_steps,
                     self.running, lr)
        self.pending = []
        return rows


class FoldTrainer:
    """Trains one fold and keeps the best-scoring weights in memory until the fold ends."""

    def __init__(self, cfg: TrainConfig, comp: Competition, backbone_config, model_path: Path, pad_id: int,
                 device: torch.device, run: RunDir, monitor: NullMonitor | None = None, dist: Dist = SINGLE):
        self.cfg = cfg
        self.dist = dist
        # heartbeat and tracker: every metrics row goes there too (rank 0's; the others log nothing)
        self.monitor = monitor if monitor is not None and dist.is_main else NullMonitor()
        self.comp = comp
        self.backbone_config = backbone_config
        self.model_path = model_path
        self.pad_id = pad_id
        self.device = device
        self.run = run
        self.dtype = amp_dtype(cfg.precision, device)
        self.loss_spec = get_loss(cfg.loss or comp.default_loss, comp.losses)
        self.targets = comp.schema.targets
        self.adapters = AdapterSpec.of(cfg)
        self.quantization = quantization_config(cfg.load_in_4bit, cfg.load_in_8bit, device, self.dtype)

    def build(self, y_train: np.ndarray) -> KitModel:
        cfg = self.cfg
        # a frozen LoRA base trains nothing itself: held in the autocast dtype it takes half the memory
        base_dtype = self.dtype if self.adapters is not None and self.dtype is not None else torch.float32
        model = build_model(self.backbone_config, self.comp.n_outputs, cfg.pooling, cfg.pooling_layers,
                            cfg.head_dropout, weights_from=self.model_path, dtype=base_dtype,
                            quantization=self.quantization, adapters=self.adapters, device=self.device,
                            window=window_of(cfg), label_tokens=label_tokens_of(cfg))
        model.init_output_bias(initial_bias(y_train, self.targets, self.loss_spec))
        reinit_top_layers(model, cfg.reinit_layers)
        freeze_bottom(model, cfg.freeze_embeddings, cfg.freeze_layers)
        if cfg.grad_checkpointing:
            model.enable_checkpointing()
        return model.place(self.device)

    def evaluate(self, model: KitModel, valid: FoldData) -> tuple[np.ndarray, float, dict[str, float]]:
        """Every rank predicts its share of the rows; the gathered predictions are scored the same on all."""
        cfg = self.cfg
        if self.dist.active:
            rows = distributed.shard_for_rank(np.argsort(-np.array([len(x) for x in valid.ids]), kind="stable"),
                                              self.dist)
            raw = infer(model, [valid.ids[i] for i in rows], self.pad_id, cfg.eval_batch_size, self.device,
                        self.dtype, max_tokens=cfg.eval_max_tokens)
            raw = distributed.gather_rows(self.dist, rows, raw, len(valid.ids))
        else:
            raw = infer(model, valid.ids, self.pad_id, cfg.eval_batch_size, self.device, self.dtype,
                        max_tokens=cfg.eval_max_tokens)
        pred = self.comp.postprocess(apply_link(self.loss_spec, torch.from_numpy(raw), self.targets).numpy())
        result = self.comp.metric(valid.y, pred, self.targets)
        return pred, result.score, result.per_target

    def batch_plan(self, n_train: int, lengths: list[int], pseudo_lengths: list[int],
                   rng: np.random.Generator, batch_size: int | None = None) -> list[list[tuple[np.ndarray, bool]]]:
        """Per stage (a pseudo pretraining pass, then each epoch) the batches in order, each flagged pseudo or not.
        Pseudo rows are indexed after the labelled ones and are batched apart from them, so their loss can be
        weighted by --pseudo-weight whatever the loss's own reduction. `batch_size` is the global batch (the
        per-process batch times the data-parallel processes); each process then takes its share of every batch."""
        cfg = self.cfg
        batch_size = batch_size or cfg.batch_size

        def pseudo_batches() -> list[np.ndarray]:
            return [b + n_train for b in bucketed_batches(pseudo_lengths, batch_size, rng)]

        stages = []
        if pseudo_lengths and cfg.pseudo_stage == "pretrain":
            stages.append([(b, True) for b in pseudo_batches()])
        for _ in range(cfg.epochs):
            plan = [(b, False) for b in bucketed_batches(lengths, batch_size, rng)]
            if pseudo_lengths and cfg.pseudo_stage == "mix":
                plan += [(b, True) for b in pseudo_batches()]
                plan = [plan[i] for i in rng.permutation(len(plan))]
            stages.append(plan)
        return stages

    def fit(self, fold: int, train: FoldData, valid: FoldData | None, pseudo: FoldData | None = None,
            stop_at: float | None = None) -> FoldOutcome:
        """Train one fold, keeping the best validation's weights. With `valid` None (the full-train model) nothing
        is validated: training stops after `stop_at` (a fraction) of the schedule's steps and keeps the last weights.

        The batches are planned up front (`batch_plan`, drawn from the fold's generator as the single-process loop
        always drew them) and fed stage by stage to a DataLoader; under DDP each rank takes its share of every
        global batch."""
        cfg, dist = self.cfg, self.dist
        started = time.monotonic()
        torch.manual_seed(cfg.seed + fold)
        rng = np.random.default_rng(cfg.seed + fold)
        core = self.build(train.y)
        model = distributed.wrap(core, dist, self.device, self._probe_batch(train)) if dist.active else core
        optimizer = make_optimizer(core, cfg)
        lengths = [len(x) for x in train.ids]
        pseudo_lengths = [len(x) for x in pseudo.ids] if pseudo is not None else []
        stages = self.batch_plan(len(train.ids), lengths, pseudo_lengths, rng, cfg.batch_size * dist.world_size)
        total_steps = max(1, sum(math.ceil(len(stage) / cfg.grad_accum) for stage in stages))
        last_step = total_steps if stop_at is None else max(1, round(stop_at * total_steps))
        scheduler = make_scheduler(optimizer, cfg.scheduler, int(cfg.warmup * total_steps), total_steps)
        scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        loss_fn = TargetLoss(self.loss_spec, self.targets).to(self.device)
        if cfg.distill and any(t.kind == "multiclass" for t in self.targets):
            loss_fn = DistillLoss(loss_fn, self.targets, cfg.distill_temperature, cfg.distill_weight)
        fgm = FGM(core, core.backbone.get_input_embeddings(), cfg.fgm_eps) if cfg.fgm_eps > 0 else None
        awp = AWP(core, cfg.awp_lr, cfg.awp_eps) if cfg.awp_lr > 0 else None
        ema = EMA(core, cfg.ema) if cfg.ema > 0 else None
        all_ids = train.ids + (pseudo.ids if pseudo is not None else [])
        y_all = np.concatenate([train.y, pseudo.y]) if pseudo is not None else train.y
        sampler = StageSampler()
        loader = make_loader(TokenBatches(all_ids, self.pad_id, y_all), sampler, self.device)
        best = Best(self.comp.metric.worst)
        steps = StepLog(fold, dist, total_steps)
        log_rows: list[dict] = []
        step = 0
        pretrain_stage = len(stages) > cfg.epochs

        def forward_loss(batch):
            """The loss of this rank's rows, weighted so that the ranks' average is the global batch's loss (and by
            --pseudo-weight for a pseudo-labelled batch)."""
            with autocast(self.device, self.dtype):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            loss = loss_fn(out.float(), batch["target"])
            return loss if batch["weight"] == 1.0 else loss * batch["weight"]

        def backward(loss):
            scaler.scale(loss / cfg.grad_accum).backward()

        for stage_index, plan in enumerate(stages):
            epoch = stage_index - 1 if pretrain_stage else stage_index  # -1: the pseudo pretraining pass
            model.train()
            sampler.plans = [shard_rows(rows, dist.rank, dist.world_size, cfg.pseudo_weight if is_pseudo else 1.0,
                                        is_pseudo) for rows, is_pseudo in plan]
            n_batches = len(plan)
            checkpoints = eval_points(n_batches, cfg.eval_every) if valid is not None and epoch >= 0 else set()
            name = "pseudo pretraining" if epoch < 0 else f"epoch {epoch + 1}/{cfg.epochs}"
            attacks = [a for a in (fgm, awp if epoch >= cfg.awp_start_epoch else None) if a is not None]
            bar = tqdm(loader, total=n_batches, desc=f"fold {fold} {name}", unit="batch", dynamic_ncols=True,
                       disable=not dist.is_main or bool(os.environ.get("TQDM_DISABLE")))
            for i, host_batch in enumerate(bar, start=1):
                batch = to_device(host_batch, self.device)
                last_micro_step = i % cfg.grad_accum == 0 or i == n_batches
                # Gradients are all-reduced only in the optimizer step's last micro-step, in each of its passes,
                # so FGM and AWP perturb along the whole global batch's gradient as one process would.
                with gradient_sync(model, last_micro_step):
                    loss = forward_loss(batch)
                    backward(loss)
                for attack in attacks:
                    attack.attack()
                    with gradient_sync(model, last_micro_step):
                        backward(forward_loss(batch))
                    attack.restore()
                if last_micro_step:
                    grad_norm = optimizer_step(optimizer, scaler, core.parameters(), cfg.max_grad_norm)
                    scheduler.step()
                    step += 1
                    if ema is not None:
                        ema.update()
                    lr = max(g["lr"] for g in optimizer.param_groups if not g["name"].startswith("head"))
                    # logged unweighted by --pseudo-weight, as a labelled batch's loss is
                    logged = loss.detach() / cfg.pseudo_weight if batch["pseudo"] else loss.detach()
                    steps.add(epoch + 1, step, logged, lr, grad_norm)
                    if len(steps) >= LOG_EVERY:
                        log_rows += self._monitored(steps.flush(bar))
                    if valid is None and step >= last_step:
                        break
                if i in checkpoints:
                    log_rows += self._monitored(steps.flush(bar))
                    with ema.applied() if ema is not None else contextlib.nullcontext():
                        pred, score, per_target = self.evaluate(core, valid)
                        improved = self.comp.metric.better(score, best.score)
                        if improved:
                            best = Best(score, step,
                                        self._state(core, self.adapters is not None) if dist.is_main else None,
                                        pred, per_target)
                    model.train()
                    log_rows.append({"fold": fold, "epoch": epoch + 1, "step": step, "train_loss": np.nan,
                                     "lr": np.nan, "grad_norm": np.nan, "val_score": score})
                    self.monitor.log(log_rows[-1])
                    bar.write(f"fold {fold} step {step}: val {self.comp.metric.name} {score:.4f}"
                              f"{' (best)' if improved else f' (best {best.score:.4f})'}")
                    self._write_log(fold, log_rows)
            log_rows += self._monitored(steps.flush(bar))
            bar.close()
            if valid is None and step >= last_step:
                break
        if valid is None:  # the full-train model: the weights after the chosen step count
            with ema.applied() if ema is not None else contextlib.nullcontext():
                best = Best(float("nan"), step, self._state(core, self.adapters is not None) if dist.is_main else None)
        self._write_log(fold, log_rows)
        self._save_weights(fold, best.state)
        return FoldOutcome(fold, best.score, best.per_target, best.step, time.monotonic() - started, best.pred,
                           total_steps, len(pseudo.ids) if pseudo is not None else 0)

    def _monitored(self, rows: list[dict]) -> list[dict]:
        for row in rows:
            self.monitor.log(row)
        return rows

    def _probe_batch(self, train: FoldData) -> dict[str, torch.Tensor]:
        """Two short real rows: enough to see which parameters get gradients."""
        return to_device(collate([list(x[:16]) for x in train.ids[:2]], self.pad_id), self.device)

    @staticmethod
    def _state(model: torch.nn.Module, adapters_only: bool = False) -> dict[str, torch.Tensor]:
        """The weights a fold saves: the whole model, or with LoRA the adapters and the head only."""
        if adapters_only:
            return trainable_state(model)
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}

    def _write_log(self, fold: int, rows: list[dict]) -> None:
        if not self.dist.is_main:
            return
        with atomic_path(self.run.fold_log(fold)) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)

    def _save_weights(self, fold: int, state: dict[str, torch.Tensor] | None) -> None:
        if not self.dist.is_main:
            return
        from safetensors.torch import save_file

        with atomic_path(self.run.weights(fold)) as tmp:
            save_file(state, str(tmp), metadata={"fold": str(fold), "format": "pt"})


def save_fold_outcome(run: RunDir, outcome: FoldOutcome, valid: FoldData, comp: Competition) -> None:
    """Predictions first, the result file last: the result file is what marks a fold as finished, and it records the
    weight file's sha256 and size, which prediction and bundling check the file against."""
    oof = pd.DataFrame(outcome.valid_pred, columns=comp.schema.output_columns)
    oof.insert(0, comp.schema.id_column, valid.row_ids)
    with atomic_path(run.fold_oof(outcome.fold)) as tmp:
        oof.to_csv(tmp, index=False)
    write_json(run.fold_result(outcome.fold), {
        "fold": outcome.fold, "score": outcome.score, "per_target": outcome.per_target,
        "best_step": outcome.best_step, "total_steps": outcome.total_steps, "seconds": round(outcome.seconds, 1),
        "n_valid": len(valid.ids), "n_pseudo": outcome.n_pseudo,
        "weights": weights_record(run.weights(outcome.fold)),
    })


def save_full_train_outcome(run: RunDir, outcome: FoldOutcome, n_rows: int, n_pseudo: int, stop_at: float,
                            from_folds: dict[str, dict]) -> None:
    """The full-train model's record: no validation, so no score and no OOF; the step count and where it came
    from. Written last: it marks the model as finished."""
    write_json(run.fold_result(outcome.fold), {
        "fold": outcome.fold, "full_train": True, "score": None, "per_target": {}, "best_step": outcome.best_step,
        "total_steps": outcome.total_steps, "stop_fraction": round(stop_at, 6), "seconds": round(outcome.seconds, 1),
        "n_train": n_rows, "n_pseudo": n_pseudo, "n_valid": 0, "from_folds": from_folds,
        "weights": weights_record(run.weights(outcome.fold)),
    })
