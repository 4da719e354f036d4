"""Test-time training (TTT): each fold model takes a few optimizer steps on the test set itself before predicting.

What Jigsaw 2025's winners called effectively mandatory: the hidden test carries information the training set lacks
(there, rule examples shipped with each test rule). Two sources of labelled rows:
- `examples`: rows the plugin marks as labelled test-time examples (`Competition.test_time_examples`; by default
  the rows of test.csv whose target columns are filled);
- `pseudo`: the fold model's own confident predictions of the test (classification and binary targets only: on a
  regression target its own prediction is a zero-loss label, nothing to learn).

Only what a LoRA fold saves trains (adapters, label rows and the head; an encoder's head alone, its backbone
frozen), in eval mode (no dropout: the steps are deterministic), from a fixed seed, so `kit predict` and the
notebook with the same settings give the same predictions. The fold file on disk never changes.

Time: the steps of all folds share `share` of the notebook's budget. The first step of each fold is timed and the
fold's steps projected from it; a fold whose projected steps do not fit what is left of the share is put back as it
was loaded and predicted plainly, and TTT stops for the remaining folds (one log line says so).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from kaggle_kit.config import setting
from kaggle_kit.errors import KitError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


class TestTimeConfig(BaseModel):
    """The TTT settings, declared once: `kit bundle --ttt` and `kit predict --ttt` parse them, the bundle manifest
    records them (`test_time`), the notebook reads them back."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid")

    steps: int = setting(0, "Optimizer steps per fold model before it predicts (0: off).", ge=0)
    source: Literal["examples", "pseudo"] = setting(
        "examples", "examples: the labelled test-time examples the plugin marks (default: test rows whose target "
                    "columns are filled); pseudo: the fold model's own confident predictions of the test.")
    lr: float = setting(1e-4, "AdamW learning rate of the steps.", gt=0)
    batch_size: int = setting(8, "Rows per step (sampled with replacement when there are fewer).", ge=1)
    confidence: float = setting(0.9, "pseudo: the smallest class probability a row's label needs.", gt=0, le=1)
    share: float = setting(0.25, "Share of the notebook's time budget that the steps of all folds may take.",
                           gt=0, le=1)
    seed: int = setting(0, "Seed of the rows each step samples.")

    @property
    def enabled(self) -> bool:
        return self.steps > 0

    def allowance_seconds(self, budget_hours: float) -> float:
        """The seconds the steps of all folds may take in a notebook with this budget."""
        return self.share * budget_hours * 3600

    def check_quantize(self, quantize: str | None) -> None:
        if self.enabled and quantize:
            raise KitError("--ttt with --quantize int8: an int8 model cannot take training steps; drop one of them")


def parse_spec(text: str | None) -> TestTimeConfig | None:
    """`steps=20,source=pseudo,lr=1e-4` -> the settings (None for no text); one line naming a bad key or value."""
    if not text:
        return None
    values: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            keys = ", ".join(TestTimeConfig.model_fields)
            raise KitError(f"--ttt {text!r}: {part!r} is not KEY=VALUE (keys: {keys})")
        values[key.strip().replace("-", "_")] = value.strip()
    return from_record(values, f"--ttt {text!r}")


def from_record(values: dict[str, Any] | None, source: str) -> TestTimeConfig | None:
    if not values:
        return None
    try:
        return TestTimeConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(map(str, first["loc"])) or "?"
        if first["type"] == "extra_forbidden":
            raise KitError(f"{source}: unknown key {key!r} (keys: {', '.join(TestTimeConfig.model_fields)})") from None
        raise KitError(f"{source}: {key}: {first['msg']}") from None


def spec_help() -> str:
    fields = TestTimeConfig.model_fields
    return "; ".join(f"{name} [{f.default}]: {f.description.rstrip('.')}" for name, f in fields.items())


@dataclass
class TestTimeRows:
    """The rows a run's fold models train on: token ids and their labels (None: each fold labels the test itself)."""

    __test__ = False
    ids: list[list[int]]
    y: np.ndarray | None


def example_rows(comp, df: pd.DataFrame, where: Path) -> pd.DataFrame | None:
    """The labelled test-time examples with their labels encoded as training encodes them, or None (logged) when
    there are none or a label is bad: TTT is then skipped and the prediction goes on."""
    from kaggle_kit.data.load import encode_labels

    targets = comp.schema.target_names
    if comp.test_time_examples is not None:
        frame = comp.test_time_examples(df)
    elif all(t in df.columns for t in targets):
        filled = np.ones(len(df), dtype=bool)
        for t in targets:
            filled &= df[t].fillna("").astype(str).str.strip().ne("").to_numpy()
        frame = df[filled]
    else:
        frame = None
    if frame is None or not len(frame):
        log.warning("test-time training skipped: %s holds no labelled test-time examples (rows with every target "
                    "column filled)", where)
        return None
    frame = frame.reset_index(drop=True)
    try:
        return encode_labels(frame.astype({t: str for t in targets}), where, comp)
    except KitError as err:
        log.warning("test-time training skipped: %s", err)
        return None


def check_pseudo_targets(targets: Sequence) -> None:
    for target in targets:
        if target.kind == "regression":
            raise KitError(f"--ttt source=pseudo: target {target.name!r} is a regression target, whose own "
                           f"prediction is a label with nothing to learn; use source=examples")


def confident_rows(probabilities: np.ndarray, targets: Sequence, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose every classification target is predicted with at least `confidence`, and their labels (class
    index per target; binary: 0/1). `probabilities` are post-link predictions in the run's output order."""
    from kaggle_kit.tasks.targets import output_slices

    check_pseudo_targets(targets)
    keep = np.ones(len(probabilities), dtype=bool)
    labels = np.zeros((len(probabilities), len(targets)), dtype=np.float32)
    for column, (target, block) in enumerate(zip(targets, output_slices(targets), strict=True)):
        if target.kind == "multiclass":
            p = probabilities[:, block]
            labels[:, column] = p.argmax(1)
            keep &= p.max(1) >= confidence
        else:
            p = probabilities[:, block.start]
            labels[:, column] = p >= 0.5
            keep &= np.maximum(p, 1 - p) >= confidence
    return np.flatnonzero(keep), labels


@dataclass
class TimeShare:
    """Seconds the TTT steps of all folds may still take (infinite without a budget)."""

    __test__ = False
    seconds: float = math.inf
    spent: float = 0.0
    stopped: bool = False
    skipped: list[str] = field(default_factory=list)
    by_fold: dict[str, float] = field(default_factory=dict)  # each adapted fold's seconds of steps

    # seconds the notebook has left before its deadline (the guard's budget), when it has one
    deadline_left: Callable[[], float] | None = None

    def left(self) -> float:
        left = self.seconds - self.spent
        return min(left, self.deadline_left()) if self.deadline_left is not None else left

    def fits(self, projected: float) -> bool:
        return not self.stopped and projected <= self.left()


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """What a LoRA fold saves (adapters, label rows, pooling and output head): an encoder's head alone."""
    from kaggle_kit.models.lora import saved_with_fold

    return [(n, p) for n, p in model.named_parameters() if saved_with_fold(n)]


def adapt(model: torch.nn.Module, ids: Sequence[Sequence[int]], y: np.ndarray, pad_id: int, loss_fn: torch.nn.Module,
          settings: TestTimeConfig, device: torch.device, dtype: torch.dtype | None, share: TimeShare, name: str,
          clock: Callable[[], float] = time.monotonic) -> bool:
    """`settings.steps` steps on (ids, y); False, with the model as it was, when they do not fit the time left or
    fail (an out-of-memory error, say): the fold then predicts plainly and TTT stops for the remaining folds."""
    import torch

    from kaggle_kit.data.batching import collate
    from kaggle_kit.device import autocast, optimizer_step

    if share.stopped:
        return False
    params = trainable_parameters(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for _, p in params:
        p.data = p.data.float()  # a 16-bit inference copy would not take small AdamW updates
        p.requires_grad_(True)
    before = {n: p.detach().clone() for n, p in params}

    def give_up(why: str) -> bool:
        with torch.no_grad():
            for n, p in params:
                p.copy_(before[n])
                p.grad = None
        for p in model.parameters():
            p.requires_grad_(False)
        share.stopped = True
        share.skipped.append(name)
        log.warning("test-time training skipped from %s on: %s; predicting without it", name, why)
        return False

    started = clock()
    try:
        optimizer = torch.optim.AdamW([p for _, p in params], lr=settings.lr, weight_decay=0.0)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        generator = np.random.default_rng(settings.seed)
        target = torch.as_tensor(y, dtype=torch.float32)
        model.eval()
        # projected from the second step (the first also pays for allocating the optimizer's state and warm-up)
        check_after = min(1, settings.steps - 1)
        for step in range(settings.steps):
            step_started = clock()
            rows = generator.choice(len(ids), size=settings.batch_size, replace=len(ids) < settings.batch_size)
            batch = {k: v.to(device) for k, v in collate([ids[i] for i in rows], pad_id).items()}
            with torch.enable_grad(), autocast(device, dtype):
                out = model(**batch)
            loss = loss_fn(out.float(), target[rows].to(device))
            scaler.scale(loss).backward()
            optimizer_step(optimizer, scaler, [p for _, p in params], 1.0)
            if step == check_after:
                now = clock()
                projected = now - started + (now - step_started) * (settings.steps - step - 1)
                if not share.fits(projected):
                    return give_up(f"its {settings.steps} steps would take about {projected:.0f}s, "
                                   f"{share.left():.0f}s of its time is left")
    except Exception as err:  # noqa: BLE001 - a failed TTT must cost only the TTT, never the fold's prediction
        failure = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
    else:
        failure = None
    if failure is not None:  # outside the handler: the traceback's frames (and their tensors) are released
        import gc

        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return give_up(f"its steps failed ({failure})")
    for p in model.parameters():
        p.requires_grad_(False)
    seconds = clock() - started
    share.spent += seconds
    share.by_fold[name] = seconds
    log.info("%s: %d test-time steps on %d rows in %.1fs (loss %.4f)", name, settings.steps, len(ids), seconds,
             float(loss.detach()))
    return True


@dataclass
class RunTestTime:
    """One run's TTT: the settings, its rows, and what the loss needs (kept with the run's tokenised inputs)."""

    __test__ = False
    settings: TestTimeConfig
    rows: TestTimeRows
    loss_spec: Any
    targets: list

    def loss(self, device: torch.device) -> torch.nn.Module:
        from kaggle_kit.tasks.losses import TargetLoss

        return TargetLoss(self.loss_spec, self.targets).to(device)


def prepare_run(comp, df: pd.DataFrame, settings: TestTimeConfig, test_ids: list[list[int]], targets: list,
                loss_spec, build_ids: Callable[[pd.DataFrame], list[list[int]]], where: Path) -> RunTestTime | None:
    """A run's TTT rows: the labelled examples tokenised as the run's inputs, or (pseudo) the test's own ids."""
    if settings.source == "pseudo":
        check_pseudo_targets(targets)
        return RunTestTime(settings, TestTimeRows(test_ids, None), loss_spec, targets)
    frame = example_rows(comp, df, where)
    if frame is None:
        return None
    y = frame[[t.name for t in targets]].to_numpy(dtype=np.float32)
    log.info("test-time training: %d labelled examples in %s, %d steps per fold", len(frame), where, settings.steps)
    return RunTestTime(settings, TestTimeRows(build_ids(frame), y), loss_spec, targets)


def adapt_fold(model: torch.nn.Module, ttt: RunTestTime, pad_id: int, batch_size: int, device: torch.device,
               dtype: torch.dtype | None, share: TimeShare, name: str) -> bool:
    """TTT of one loaded fold model; with source=pseudo it first predicts the test to label its confident rows."""
    import torch

    ids, y = ttt.rows.ids, ttt.rows.y
    if share.stopped:
        return False
    if y is None:
        from kaggle_kit.predict.inference import infer
        from kaggle_kit.tasks.losses import apply_link

        labelling = time.monotonic()
        raw = infer(model, ids, pad_id, batch_size, device, dtype)
        share.spent += time.monotonic() - labelling  # the share pays for the labelling pass too
        probabilities = apply_link(ttt.loss_spec, torch.from_numpy(raw), ttt.targets).numpy()
        keep, labels = confident_rows(probabilities, ttt.targets, ttt.settings.confidence)
        if not len(keep):
            log.warning("%s: no test row is predicted with probability >= %g; no test-time training", name,
                        ttt.settings.confidence)
            return False
        log.info("%s: %d of %d test rows pseudo-labelled (probability >= %g)", name, len(keep), len(ids),
                 ttt.settings.confidence)
        ids, y = [ids[i] for i in keep], labels[keep]
    return adapt(model, ids, y, pad_id, ttt.loss(device), ttt.settings, device, dtype, share, name)
