"""Watch FoldTrainer.fit from the outside: the model it builds, every optimizer step, every training forward
and every validation. The option tests compare what the trainer really did with what the option promises."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from kaggle_kit.config import TrainConfig
from kaggle_kit.device import pick_device
from kaggle_kit.models.model import load_backbone_config
from kaggle_kit.predict.inference import build_model_inputs, load_tokenizer
from kaggle_kit.registry import get_competition
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.train.trainer import FoldData, FoldTrainer

ELL = get_competition("ell")
# CUDA where there is one: the options must work on the device users train on. fp32 keeps step counts and
# update sizes exact (fp16's gradient scaler may skip a step on purpose).
DEVICE = pick_device("auto")
# Small and fast on the tiny BERT: 32 training essays in batches of 4, 16 validation essays, 32 tokens each.
FAST = dict(competition="ell", epochs=1, max_len=32, batch_size=4, eval_batch_size=16, lr=1e-3, head_lr=1e-2,
            scheduler="constant", warmup=0.0, eval_every=1, precision="fp32", seed=3)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}


@dataclass
class Step:
    """One optimizer step: each group's LR, the parameters and gradients just before it, the parameters after."""

    lrs: dict[str, float]
    before: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    after: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Evaluation:
    step: int
    params: dict[str, torch.Tensor]
    pred: np.ndarray
    score: float


class TrainingSpy:
    """Records what one `FoldTrainer.fit` did. `watch` names the parameters recorded at each training forward."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, watch: tuple[str, ...] = ()):
        self.model: torch.nn.Module | None = None
        self.initial: dict[str, torch.Tensor] = {}
        self.steps: list[Step] = []
        self.forwards: list[dict[str, torch.Tensor]] = []  # training-mode forwards only
        self.evaluations: list[Evaluation] = []
        self.scores: list[float] | None = None  # scripted validation scores, replacing the real ones
        self.watch = watch
        spy = self
        real_build, real_evaluate = FoldTrainer.build, FoldTrainer.evaluate

        def build(trainer, y_train):
            model = real_build(trainer, y_train)
            spy.model = model
            spy.initial = snapshot(model)
            model.register_forward_pre_hook(spy._on_forward)
            return model

        def evaluate(trainer, model, valid):
            pred, score, per_target = real_evaluate(trainer, model, valid)
            if spy.scores is not None:
                score = spy.scores[len(spy.evaluations)]
            spy.evaluations.append(Evaluation(len(spy.steps), snapshot(model), pred.copy(), score))
            return pred, score, per_target

        monkeypatch.setattr(FoldTrainer, "build", build)
        monkeypatch.setattr(FoldTrainer, "evaluate", evaluate)

    def _on_forward(self, module, args):
        if module.training:
            params = dict(module.named_parameters())
            self.forwards.append({n: params[n].detach().to("cpu", copy=True) for n in self.watch})

    def _before_step(self, optimizer, args, kwargs):
        names = {id(p): n for n, p in self.model.named_parameters()}
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        grads = {names[id(p)]: p.grad.detach().to("cpu", copy=True)
                 for g in optimizer.param_groups for p in g["params"] if p.grad is not None}
        self.steps.append(Step(lrs, snapshot(self.model), grads))

    def _after_step(self, optimizer, args, kwargs):
        self.steps[-1].after = snapshot(self.model)

    @contextlib.contextmanager
    def hooks(self):
        handles = [register_optimizer_step_pre_hook(self._before_step),
                   register_optimizer_step_post_hook(self._after_step)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


@pytest.fixture(scope="session")
def ell_fold(ell_small_dir, tiny_bert) -> tuple[FoldData, FoldData]:
    """The 48 real essays tokenised for the tiny BERT: the first 32 train, the last 16 validate."""
    df = pd.read_csv(ell_small_dir / "train.csv")
    ids = build_model_inputs(ELL, df, load_tokenizer(tiny_bert), TrainConfig(**FAST), ell_small_dir, files={})
    y = df[ELL.schema.target_names].to_numpy(np.float32)
    row_ids = df["text_id"].to_numpy()
    return FoldData(ids[:32], y[:32], row_ids[:32]), FoldData(ids[32:], y[32:], row_ids[32:])


def make_trainer(run_dir: Path, model_dir: Path, comp=ELL, device: torch.device | None = None,
                 **settings) -> FoldTrainer:
    cfg = TrainConfig(**{**FAST, "competition": comp.name, **settings})
    pad_id = load_tokenizer(model_dir).pad_token_id or 0
    return FoldTrainer(cfg, comp, load_backbone_config(model_dir, cfg.backbone_dropout), model_dir, pad_id,
                       device or DEVICE, RunDir(run_dir))


@pytest.fixture
def fit(monkeypatch, tmp_path, tiny_bert, ell_fold):
    """fit(**settings) -> (outcome, spy, trainer): one fold of the tiny BERT on 32 real essays, watched."""
    runs = iter(range(1000))

    def _fit(watch: tuple[str, ...] = (), scores: list[float] | None = None, fold_data=None, comp=ELL,
             device: torch.device | None = None, **settings):
        with monkeypatch.context() as patch:
            spy = TrainingSpy(patch, watch)
            spy.scores = scores
            trainer = make_trainer(tmp_path / f"run{next(runs)}", tiny_bert, comp, device, **settings)
            with spy.hooks():
                outcome = trainer.fit(0, *(fold_data or ell_fold))
        return outcome, spy, trainer

    return _fit
