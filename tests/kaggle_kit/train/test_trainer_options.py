"""Every option that changes training is checked against what the trainer really did, watched from outside
(conftest.TrainingSpy): a silently ignored option changes what these tests observe."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from kaggle_kit.config import TrainConfig
from kaggle_kit.models.model import build_model
from kaggle_kit.registry import get_competition
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.tasks.metrics import PEARSON
from kaggle_kit.train.pipeline import prepare
from kaggle_kit.train.trainer import FoldData, save_fold_outcome
from tests.kaggle_kit.train.conftest import ELL, make_trainer

N_LAYERS = 2  # the tiny BERT of tests/conftest.py
EMBEDDINGS = "backbone.embeddings.word_embeddings.weight"
QUERY0 = "backbone.encoder.layer.0.attention.self.query.weight"


def part_of(name: str) -> str:
    """head, embeddings, layer0, layer1 or other, from the parameter's name alone (not the kit's grouping)."""
    if not name.startswith("backbone."):
        return "head"
    if name.startswith("backbone.embeddings."):
        return "embeddings"
    layer = re.match(r"backbone\.encoder\.layer\.(\d+)\.", name)
    return f"layer{layer.group(1)}" if layer else "other"


def layer_lr(name: str, lr: float, head_lr: float, decay: float) -> float:
    """The LR a parameter must train at: LLRD counts down from the top block, the head has its own."""
    part = part_of(name)
    if part == "head":
        return head_lr
    if part == "embeddings":
        return lr * decay**N_LAYERS
    return lr * decay ** (N_LAYERS - 1 - int(part[5:])) if part.startswith("layer") else lr


def saved_weights(trainer, fold: int = 0) -> dict[str, torch.Tensor]:
    return load_file(str(trainer.run.weights(fold)))


def total_norm(grads: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([grads[n].double().flatten() for n in sorted(grads)])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


# ---- the optimizer really steps, once per accumulated batch -----------------------------------------------------

@pytest.mark.parametrize("grad_accum", [1, 3])
def test_one_optimizer_step_per_accumulated_batch_and_every_layer_moves(fit, grad_accum):
    """32 rows in batches of 4 = 8 micro-batches per epoch; 2 epochs."""
    outcome, spy, trainer = fit(grad_accum=grad_accum, epochs=2)
    assert len(spy.steps) == 2 * math.ceil(8 / grad_accum)
    assert len(spy.forwards) == 16  # one training forward per micro-batch, nothing else
    final = saved_weights(trainer)
    for name in (EMBEDDINGS, QUERY0, "backbone.encoder.layer.1.output.dense.weight", "fc.weight", "fc.bias"):
        assert not torch.equal(final[name], spy.initial[name]), f"{name} never changed"
        assert all(not torch.equal(s.after[name], s.before[name]) for s in spy.steps), f"a step left {name} alone"


def test_gradient_accumulation_equals_a_batch_twice_as_large(fit, monkeypatch):
    """With a loss that averages over rows (MSE), 2 accumulated micro-batches of 4 rows give the gradient of the
    batch of 8 made of them: same gradients at every step, same final weights."""
    def in_order(lengths, batch_size, rng):
        return [np.arange(i, min(i + batch_size, len(lengths))) for i in range(0, len(lengths), batch_size)]

    monkeypatch.setattr("kaggle_kit.train.trainer.bucketed_batches", in_order)
    _, big, big_trainer = fit(batch_size=8, grad_accum=1, loss="mse")
    _, accumulated, acc_trainer = fit(batch_size=4, grad_accum=2, loss="mse")
    assert len(big.steps) == len(accumulated.steps) == 4
    for k, (a, b) in enumerate(zip(big.steps, accumulated.steps, strict=True)):
        assert a.grads.keys() == b.grads.keys()
        overall = max(float(g.abs().max()) for g in a.grads.values())
        for name in a.grads:
            torch.testing.assert_close(b.grads[name], a.grads[name], rtol=1e-4, atol=1e-6 * overall,
                                       msg=f"step {k}: {name}")
    final_big, final_acc = saved_weights(big_trainer), saved_weights(acc_trainer)
    for name in final_big:
        torch.testing.assert_close(final_acc[name], final_big[name], rtol=1e-4, atol=1e-6)


# ---- learning rates: LLRD, head_lr, schedulers, weight decay ----------------------------------------------------

def test_first_update_of_each_layer_is_its_own_learning_rate(fit):
    """Adam's first step moves each weight by its LR (g / |g| = +-1), so the largest first update of every
    tensor shows the LR it really trained at: LLRD per layer, head_lr for the head."""
    lr, head_lr, decay = 1e-3, 2e-2, 0.5
    _, spy, _ = fit(lr=lr, head_lr=head_lr, llrd=decay, weight_decay=0.0, max_grad_norm=1e9)
    first = spy.steps[0]
    checked = set()
    for name, grad in first.grads.items():
        if float(grad.abs().max()) < 1e-4:  # Adam's eps (1e-6) would shrink the step of a tiny gradient
            continue
        moved = float((first.after[name] - first.before[name]).abs().max())
        assert moved == pytest.approx(layer_lr(name, lr, head_lr, decay), rel=0.02), name
        checked.add(part_of(name))
    assert {"head", "embeddings", "layer0", "layer1"} <= checked, checked


def test_weight_decay_shrinks_matrices_and_spares_biases_and_norms(fit):
    """The same first step with and without weight decay: AdamW's extra move is -lr * wd * w on every matrix,
    and nothing on 1-D tensors (biases, LayerNorm)."""
    lr, head_lr, decay, wd = 1e-3, 1e-2, 0.5, 0.5
    settings = dict(lr=lr, head_lr=head_lr, llrd=decay, max_grad_norm=1e9)
    _, plain, _ = fit(weight_decay=0.0, **settings)
    _, decayed, _ = fit(weight_decay=wd, **settings)
    a, b = plain.steps[0], decayed.steps[0]
    kinds = set()
    for name in a.grads:
        torch.testing.assert_close(b.before[name], a.before[name], rtol=0, atol=0)
        extra = (b.after[name] - b.before[name]) - (a.after[name] - a.before[name])
        if a.before[name].ndim >= 2:
            expected = -layer_lr(name, lr, head_lr, decay) * wd * a.before[name]
            torch.testing.assert_close(extra, expected, rtol=2e-2, atol=1e-8, msg=name)
            kinds.add("matrix")
        else:
            assert float(extra.abs().max()) <= 1e-7, f"{name} (1-D) was weight-decayed"
            kinds.add("vector")
    assert kinds == {"matrix", "vector"}


def _schedule(name: str, k: int, warmup: int, total: int) -> float:
    if k < warmup:
        return k / max(1, warmup)
    if name == "constant":
        return 1.0
    progress = (k - warmup) / max(1, total - warmup)
    return max(0.0, 1.0 - progress) if name == "linear" else max(0.0, 0.5 * (1 + math.cos(math.pi * progress)))


@pytest.mark.parametrize(("scheduler", "grad_accum"), [("linear", 1), ("cosine", 2), ("constant", 1)])
def test_learning_rate_follows_the_schedule_step_by_step(fit, scheduler, grad_accum):
    lr, head_lr = 1e-3, 1e-2
    _, spy, _ = fit(scheduler=scheduler, warmup=0.25, epochs=2, grad_accum=grad_accum, lr=lr, head_lr=head_lr)
    total = 16 // grad_accum
    assert len(spy.steps) == total
    warmup = int(0.25 * total)
    for k, step in enumerate(spy.steps):
        factor = _schedule(scheduler, k, warmup, total)
        for group, value in step.lrs.items():
            base = head_lr if group.startswith("head") else lr
            assert value == pytest.approx(base * factor, abs=1e-12), (k, group)
    if scheduler != "constant":
        assert spy.steps[-1].lrs["head"] < 0.2 * head_lr


# ---- clipping, output bias, dropout, seeds ----------------------------------------------------------------------

def test_gradients_are_clipped_to_max_grad_norm(fit):
    _, free, _ = fit(max_grad_norm=1e9)
    assert total_norm(free.steps[0].grads) > 0.05  # so a limit of 0.01 must bite
    _, clipped, _ = fit(max_grad_norm=0.01)
    for k, step in enumerate(clipped.steps):
        assert total_norm(step.grads) <= 0.01 * (1 + 1e-4), k


@pytest.mark.parametrize("comp_name", ["ell", "uspppm"])
def test_output_bias_starts_at_the_training_mean_or_its_logit(tmp_path, tiny_bert, comp_name):
    """So an untrained model already predicts the mean: rmse predicts it directly, bce through a sigmoid."""
    comp = get_competition(comp_name)
    rng = np.random.default_rng(0)
    allowed = np.array(comp.schema.targets[0].allowed or np.arange(1.0, 5.01, 0.5))
    y = rng.choice(allowed, size=(40, comp.n_outputs)).astype(np.float32)
    trainer = make_trainer(tmp_path, tiny_bert, comp)
    model = trainer.build(y)
    mean = torch.as_tensor(y.mean(axis=0))
    expected = torch.logit(mean) if comp.default_loss == "bce" else mean
    torch.testing.assert_close(model.fc.bias.detach().cpu(), expected, rtol=1e-5, atol=1e-5)
    ids = [list(rng.integers(1000, 5000, n)) for n in (5, 17, 9, 30)]
    rows = FoldData(ids, np.zeros((len(ids), comp.n_outputs), np.float32), np.arange(len(ids)))
    pred = torch.from_numpy(trainer.evaluate(model, rows)[0])
    assert float((pred.mean(0) - mean).abs().max()) < 0.5  # a zero bias would predict ~0 (clipped to 1 for ELL)


def test_fit_starts_from_the_initialised_bias(fit, ell_fold):
    _, spy, _ = fit()
    torch.testing.assert_close(spy.steps[0].before["fc.bias"], torch.as_tensor(ell_fold[0].y.mean(axis=0)))


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_backbone_dropout_reaches_the_model_that_trains(tmp_path, ell_small_dir, tiny_bert, dropout):
    """The tiny BERT's own config says 0.1: the run's setting must replace it (0 = identical train-mode passes)."""
    cfg = TrainConfig(competition="ell", folds=2, max_len=32, data=str(ell_small_dir), model=str(tiny_bert),
                      backbone_dropout=dropout)
    prep = prepare(cfg, RunDir(tmp_path / "run"), resume=False)
    assert prep.backbone_config.hidden_dropout_prob == dropout
    assert prep.backbone_config.attention_probs_dropout_prob == dropout
    model = build_model(prep.backbone_config, 6, "mean", weights_from=tiny_bert).train()
    ids = torch.as_tensor([prep.ids[0]])
    with torch.no_grad():
        first, second = model(ids, torch.ones_like(ids)), model(ids, torch.ones_like(ids))
    assert torch.equal(first, second) == (dropout == 0.0)


def test_same_seed_same_weights_other_seed_other_weights(fit):
    """On the CPU, where kernels are deterministic (CUDA's atomics are not bitwise reproducible)."""
    cpu = torch.device("cpu")
    first, _, first_trainer = fit(device=cpu, seed=5)
    again, _, again_trainer = fit(device=cpu, seed=5)
    other, _, other_trainer = fit(device=cpu, seed=6)
    a, b, c = (saved_weights(t) for t in (first_trainer, again_trainer, other_trainer))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert np.array_equal(first.valid_pred, again.valid_pred)
    assert not torch.equal(a["fc.weight"], c["fc.weight"])
    assert not np.array_equal(first.valid_pred, other.valid_pred)


# ---- adversarial training ---------------------------------------------------------------------------------------

def test_fgm_trains_on_embeddings_moved_by_eps_then_restores_them(fit):
    eps = 0.5
    _, spy, _ = fit(fgm_eps=eps, watch=(EMBEDDINGS,))
    assert len(spy.steps) == 8 and len(spy.forwards) == 16  # a clean and an attacked pass per batch
    for k, step in enumerate(spy.steps):
        clean, attacked = spy.forwards[2 * k][EMBEDDINGS], spy.forwards[2 * k + 1][EMBEDDINGS]
        assert torch.equal(clean, step.before[EMBEDDINGS]), f"batch {k}: the attack was not undone"
        assert float((attacked - clean).norm()) == pytest.approx(eps, rel=1e-3), k
    _, off, _ = fit(watch=(EMBEDDINGS,))
    assert len(off.forwards) == 8


def test_fgm_adds_the_attacked_gradient(fit):
    """Off, the step's gradient is the clean one; on, clean + attacked. Twice the clean one (attack skipped) or
    the clean one alone (attacked loss never backpropagated) would point the same way."""
    _, off, _ = fit(max_grad_norm=1e9)
    _, on, _ = fit(max_grad_norm=1e9, fgm_eps=0.5)
    clean, combined = flat(off.steps[0].grads), flat(on.steps[0].grads)
    assert cosine(clean, combined) < 0.9999
    assert float(combined.norm()) > 1.2 * float(clean.norm())


def test_awp_attacks_weights_within_bound_from_its_start_epoch_and_restores(fit):
    eps = 0.05
    watch = (QUERY0, "fc.weight", "fc.bias")
    _, spy, _ = fit(awp_lr=1.0, awp_eps=eps, awp_start_epoch=1, epochs=2, watch=watch)
    assert len(spy.steps) == 16
    assert len(spy.forwards) == 8 + 16  # epoch 0 clean only; epoch 1 clean + attacked
    for k, step in enumerate(spy.steps[:8]):
        assert torch.equal(spy.forwards[k][QUERY0], step.before[QUERY0])
    for k, step in enumerate(spy.steps[8:]):
        clean, attacked = spy.forwards[8 + 2 * k], spy.forwards[8 + 2 * k + 1]
        for name in watch:
            assert torch.equal(clean[name], step.before[name]), f"step {8 + k}: {name} not restored"
        for name in (QUERY0, "fc.weight"):
            moved = (attacked[name] - clean[name]).abs()
            assert float(moved.max()) > 0, f"step {8 + k}: AWP left {name} alone"
            assert torch.all(moved <= eps * clean[name].abs() + 1e-6), name
        assert torch.equal(attacked["fc.bias"], clean["fc.bias"])  # AWP perturbs weights, not biases


def test_awp_adds_the_attacked_gradient(fit):
    _, off, _ = fit(max_grad_norm=1e9)
    _, on, _ = fit(max_grad_norm=1e9, awp_lr=1.0, awp_eps=0.05, awp_start_epoch=0)
    clean, combined = flat(off.steps[0].grads), flat(on.steps[0].grads)
    assert cosine(clean, combined) < 0.9999
    assert float(combined.norm()) > 1.2 * float(clean.norm())


# ---- EMA and the best checkpoint --------------------------------------------------------------------------------

def test_ema_weights_are_evaluated_and_saved(fit):
    decay = 0.5
    outcome, spy, trainer = fit(ema=decay, eval_every=2)
    shadow = {n: t.double() for n, t in spy.initial.items()}
    by_step = {}
    for k, step in enumerate(spy.steps, start=1):
        shadow = {n: decay * shadow[n] + (1 - decay) * step.after[n].double() for n in shadow}
        by_step[k] = shadow
    assert [e.step for e in spy.evaluations] == [4, 8]
    for evaluation in spy.evaluations:
        expected = by_step[evaluation.step]
        live = spy.steps[evaluation.step - 1].after
        for name, value in evaluation.params.items():
            torch.testing.assert_close(value.double(), expected[name], rtol=1e-5, atol=1e-6, msg=name)
        assert not torch.equal(evaluation.params["fc.weight"], live["fc.weight"])
    best = next(e for e in spy.evaluations if e.step == outcome.best_step)
    saved = saved_weights(trainer)
    for name, value in best.params.items():
        assert torch.equal(saved[name], value), name


def test_live_weights_change_only_through_the_optimizer(fit):
    """FGM, AWP and EMA each swap weights in and out: after all of them, every step starts from the weights the
    previous step left."""
    _, spy, _ = fit(fgm_eps=0.5, awp_lr=1.0, awp_eps=0.05, awp_start_epoch=0, ema=0.5, eval_every=4)
    assert len(spy.evaluations) == 4
    for k in range(1, len(spy.steps)):
        for name, value in spy.steps[k].before.items():
            assert torch.equal(value, spy.steps[k - 1].after[name]), (k, name)


@pytest.mark.parametrize(("greater_is_better", "scores"), [(False, [0.9, 0.5, 0.7]), (True, [0.1, 0.6, 0.3])])
def test_the_best_validation_not_the_last_is_saved_and_its_oof_recorded(fit, ell_fold, greater_is_better, scores):
    """Scripted validation scores make the second of three validations the best, in both metric directions."""
    comp = ELL if not greater_is_better else dataclasses.replace(ELL, metric=PEARSON)
    outcome, spy, trainer = fit(eval_every=3, scores=scores, comp=comp)
    assert len(spy.evaluations) == 3
    best, last = spy.evaluations[1], spy.evaluations[2]
    assert outcome.score == scores[1] and outcome.best_step == best.step
    np.testing.assert_array_equal(outcome.valid_pred, best.pred)
    saved = saved_weights(trainer)
    assert all(torch.equal(saved[n], best.params[n]) for n in best.params)
    assert not torch.equal(saved["fc.weight"], last.params["fc.weight"])

    save_fold_outcome(trainer.run, outcome, ell_fold[1], comp)
    oof = pd.read_csv(trainer.run.fold_oof(0))
    assert list(oof["text_id"]) == list(ell_fold[1].row_ids)
    np.testing.assert_allclose(oof[comp.schema.target_names].to_numpy(), best.pred, rtol=1e-6)
    log = pd.read_csv(trainer.run.fold_log(0))
    assert log["val_score"].dropna().tolist() == scores


@pytest.mark.parametrize("comp_name", ["ell", "uspppm"])
@pytest.mark.parametrize("shift", [50.0, -50.0])
def test_validation_predictions_go_through_the_link_and_the_postprocessing(tmp_path, tiny_bert, comp_name, shift):
    """The OOF predictions are what `kit predict` would give: far outside the range, only the loss's link (a
    sigmoid) or the plugin's post-processing (a clip) brings them back to each target's bound."""
    comp = get_competition(comp_name)
    trainer = make_trainer(tmp_path, tiny_bert, comp)
    model = trainer.build(np.full((4, comp.n_outputs), 0.5, np.float32))
    with torch.no_grad():
        model.fc.bias += shift
    ids = [[101, 2000 + i, 102] for i in range(4)]
    rows = FoldData(ids, np.zeros((4, comp.n_outputs), np.float32), np.arange(4))
    pred = trainer.evaluate(model, rows)[0]
    for i, target in enumerate(comp.schema.targets):
        np.testing.assert_allclose(pred[:, i], target.high if shift > 0 else target.low, atol=1e-6)


def test_reinitialised_and_frozen_layers_reach_the_model_that_trains(fit, tiny_bert):
    """--reinit-layers 1: the top block starts from fresh weights, the others from the checkpoint;
    --freeze-embeddings --freeze-layers 1: the embeddings and the bottom block never move, the rest trains."""
    pretrained = load_file(str(tiny_bert / "model.safetensors"))
    top = "backbone.encoder.layer.1.attention.self.query.weight"
    _, spy, trainer = fit(reinit_layers=1, freeze_embeddings=True, freeze_layers=1)
    assert not torch.equal(spy.initial[top], pretrained[top.removeprefix("backbone.")])
    assert torch.equal(spy.initial[QUERY0], pretrained[QUERY0.removeprefix("backbone.")])
    saved = saved_weights(trainer)
    for name in (EMBEDDINGS, QUERY0):
        assert name not in spy.steps[0].grads and torch.equal(saved[name], spy.initial[name]), name
    assert not torch.equal(saved[top], spy.initial[top])
