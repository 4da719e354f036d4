"""Frozen-backbone mode: pooled embeddings once, then a ridge head per fold.

Top ELL solutions used such models as cheap ensemble members. A ridge head on pooled features is exactly the
KitModel's output layer, so each fold is saved as ordinary `fold{k}.safetensors` (pretrained backbone + ridge
weights in `fc`) and predicts, bundles and ensembles like a fine-tuned fold.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from kaggle_kit.config import TrainConfig
from kaggle_kit.errors import KitError
from kaggle_kit.models.model import KitModel, build_model, window_of
from kaggle_kit.predict.inference import infer
from kaggle_kit.tasks.losses import LossSpec, apply_link
from kaggle_kit.train.trainer import FoldData, FoldOutcome, FoldTrainer

log = logging.getLogger(__name__)

ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
PARAMETER_FREE_POOLINGS = ("mean", "max", "min", "cls", "last-token", "concat-last4")


def ridge_targets(y: np.ndarray, targets, spec: LossSpec) -> np.ndarray:
    """The ridge fits the model's raw output: logits when predictions are a sigmoid, and for a softmax over K
    classes the log of the (softened) one-hot labels, whose softmax gives back the softened labels."""
    if spec.bias == "logit":
        clipped = np.clip(y, 0.02, 0.98)
        return np.log(clipped / (1 - clipped))
    if all(t.kind != "multiclass" for t in targets):
        return y
    parts = []
    for i, target in enumerate(targets):
        if target.kind == "multiclass":
            one_hot = np.eye(target.width)[y[:, i].astype(np.int64)]
            parts.append(np.log(np.clip(one_hot, 0.02, 0.98)))
        else:
            parts.append(y[:, i:i + 1])
    return np.concatenate(parts, axis=1)


def check_config(cfg: TrainConfig, targets=()) -> None:
    """Checked before the run folder exists: a learned pooling would stay at its random initialisation, and a
    multi-class teacher (--distill) is a loss on soft labels, which a ridge head fitted in closed form never sees."""
    if cfg.pooling not in PARAMETER_FREE_POOLINGS:
        raise KitError(f"--pooling {cfg.pooling!r}: --mode frozen needs a pooling without trained "
                       f"weights ({', '.join(PARAMETER_FREE_POOLINGS)})")
    for name, on in (("--full-train", cfg.full_train), ("--pseudo", cfg.pseudo)):
        if on:
            raise KitError(f"{name} with --mode frozen: not supported (a ridge head has no step count to take from "
                           f"the folds, and no batches to weight); use --mode finetune")
    multiclass = [t.name for t in targets if t.kind == "multiclass"]
    if cfg.distill and multiclass:
        raise KitError(f"--distill with --mode frozen: the teacher of multi-class target {multiclass[0]!r} is a "
                       f"KL loss on its probabilities, which the frozen mode's ridge head never trains on; use "
                       f"--mode finetune")


class FrozenFoldTrainer(FoldTrainer):
    """Same interface as FoldTrainer.fit; the backbone is never updated."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_config(self.cfg, self.targets)
        self.model: KitModel | None = None
        self.features: dict[object, np.ndarray] = {}

    def _extractor(self) -> KitModel:
        """The pretrained model with an identity output layer, so `infer` returns the pooled features."""
        if self.model is None:
            cfg = self.cfg
            self.model = build_model(self.backbone_config, self.comp.n_outputs, cfg.pooling, cfg.pooling_layers,
                                     0.0, weights_from=self.model_path, window=window_of(cfg)).to(self.device)
        return self.model

    def embed(self, data: FoldData) -> np.ndarray:
        """Pooled features per row, each row embedded once for all folds."""
        missing = [i for i, row_id in enumerate(data.row_ids) if row_id not in self.features]
        if missing:
            model = self._extractor()
            head = model.fc
            dim = model.pooling.out_dim
            model.fc = torch.nn.Linear(dim, dim).to(self.device)
            with torch.no_grad():
                model.fc.weight.copy_(torch.eye(dim))
                model.fc.bias.zero_()
            try:
                out = infer(model, [data.ids[i] for i in missing], self.pad_id, self.cfg.eval_batch_size,
                            self.device, self.dtype, desc="embedding")
            finally:
                model.fc = head
            self.features.update(zip(data.row_ids[missing], out, strict=True))
        return np.stack([self.features[row_id] for row_id in data.row_ids])

    def fit(self, fold: int, train: FoldData, valid: FoldData, pseudo: FoldData | None = None,
            stop_at: float | None = None) -> FoldOutcome:
        started = time.monotonic()
        ridge = RidgeCV(alphas=ALPHAS).fit(self.embed(train), ridge_targets(train.y, self.targets, self.loss_spec))
        log.info("fold %d: ridge alpha %g", fold, ridge.alpha_)
        raw = ridge.predict(self.embed(valid)).reshape(len(valid.ids), -1).astype(np.float32)
        pred = self.comp.postprocess(apply_link(self.loss_spec, torch.from_numpy(raw), self.targets).numpy())
        result = self.comp.metric(valid.y, pred, self.targets)
        model = self._extractor()
        with torch.no_grad():
            model.fc.weight.copy_(torch.as_tensor(np.atleast_2d(ridge.coef_), dtype=torch.float32))
            model.fc.bias.copy_(torch.as_tensor(np.atleast_1d(ridge.intercept_), dtype=torch.float32))
        self._write_log(fold, [{"fold": fold, "epoch": 1, "step": 0, "train_loss": np.nan, "lr": np.nan,
                                "grad_norm": np.nan, "val_score": result.score}])
        self._save_weights(fold, self._state(model))
        return FoldOutcome(fold, result.score, result.per_target, 0, time.monotonic() - started, pred)
