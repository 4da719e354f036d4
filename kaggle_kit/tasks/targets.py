"""What a label column is: a regression score, a binary label or one of K classes, and how it is encoded.

The model sees numbers only. A regression target is its own value; a binary target is 0/1 (its second class is
the positive one); a multiclass target is the index of its label in `classes`, in the order the plugin declares.
The model has one output per regression or binary target and K per multiclass target; predictions are scores,
the positive class's probability, or one probability per class (in `classes` order), and their columns in
oof.csv and the submission are named after the target, or after its classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("regression", "binary", "multiclass")
# How each kind may appear in a submission; the first is the default.
SUBMIT_FORMATS = {
    "regression": ("score", "integer"),
    "binary": ("probability", "label"),
    "multiclass": ("probabilities", "label"),
}


@dataclass(frozen=True)
class Target:
    """A label column and the values it may take (checked on every row of train.csv).

    kind="regression": `low`, `high`, `step` or `allowed` bound the values. kind="binary": `classes` are the
    (negative, positive) labels, (0, 1) unless given. kind="multiclass": `classes` are the K labels, strings or
    ints, in the order of the model's outputs and the submission's probability columns. `submit` says how a
    prediction goes into the submission (SUBMIT_FORMATS: e.g. "integer" rounds a score to the nearest allowed
    value, "label" writes the most probable class).
    """

    name: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    allowed: tuple[float, ...] | None = None
    kind: str = "regression"
    classes: tuple[Any, ...] = ()
    submit: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"target {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "binary" and not self.classes:
            object.__setattr__(self, "classes", (0, 1))
        if self.kind == "regression" and self.classes:
            raise ValueError(f"target {self.name!r}: a regression target has no classes (use kind='multiclass')")
        if self.kind == "binary" and len(self.classes) != 2:
            raise ValueError(f"target {self.name!r}: a binary target has 2 classes (negative, positive)")
        if self.kind == "multiclass" and len(self.classes) < 2:
            raise ValueError(f"target {self.name!r}: a multiclass target needs its classes, e.g. ('a', 'b', 'c')")
        if len({str(c) for c in self.classes}) != len(self.classes):
            raise ValueError(f"target {self.name!r}: classes {self.classes} repeat a label")
        if self.submit is not None and self.submit not in SUBMIT_FORMATS[self.kind]:
            raise ValueError(f"target {self.name!r}: submit={self.submit!r} is not one of "
                             f"{', '.join(SUBMIT_FORMATS[self.kind])} for a {self.kind} target")
        grid = self.grid() if self.kind == "regression" else None
        if self.submit == "integer" and grid is not None and not np.allclose(grid, np.round(grid)):
            raise ValueError(f"target {self.name!r}: submit='integer' needs whole-number values, not step {self.step}")

    # ---- shape ----------------------------------------------------------------------------------------------------

    @property
    def width(self) -> int:
        """How many model outputs (and prediction columns) the target has."""
        return len(self.classes) if self.kind == "multiclass" else 1

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Prediction columns in oof.csv: one per class for multiclass, else the target's name."""
        return tuple(str(c) for c in self.classes) if self.kind == "multiclass" else (self.name,)

    @property
    def submit_format(self) -> str:
        return self.submit or SUBMIT_FORMATS[self.kind][0]

    @property
    def submission_columns(self) -> tuple[str, ...]:
        return self.output_columns if self.submit_format == "probabilities" else (self.name,)

    def record(self) -> dict[str, Any]:
        """What a run records about the target (run_config.json `targets`), so it predicts with its own encoding."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.classes:
            out["classes"] = list(self.classes)
        return out

    def describe(self) -> str:
        if self.kind == "regression":
            return "regression"
        return f"{self.kind} ({', '.join(map(str, self.classes))})"

    # ---- values ---------------------------------------------------------------------------------------------------

    def grid(self) -> np.ndarray | None:
        """The values a regression label can take when they are discrete (for QWK and integer submissions)."""
        if self.kind != "regression":
            return np.arange(len(self.classes), dtype=np.float64)
        if self.allowed is not None:
            return np.array(sorted(self.allowed), dtype=np.float64)
        if self.low is not None and self.high is not None and self.step is not None:
            count = int(round((self.high - self.low) / self.step)) + 1
            return self.low + self.step * np.arange(count, dtype=np.float64)
        return None

    def problem(self, value: float) -> str | None:
        """Why the regression label `value` is not valid, or None when it is."""
        if self.allowed is not None:
            if not any(abs(value - a) < 1e-9 for a in self.allowed):
                return f"{value:g} is not one of {', '.join(f'{a:g}' for a in self.allowed)}"
            return None
        if self.low is not None and value < self.low - 1e-9:
            return f"{value:g} is below the minimum {self.low:g}"
        if self.high is not None and value > self.high + 1e-9:
            return f"{value:g} is above the maximum {self.high:g}"
        if self.step is not None:
            base = self.low if self.low is not None else 0.0
            ratio = (value - base) / self.step
            if abs(ratio - round(ratio)) > 1e-6:
                return f"{value:g} is not on the {self.step:g} grid"
        return None

    def class_index(self, label: str) -> int | None:
        """The index of a label as read from a CSV cell ("Adequate", "1", "1.0"), or None when it is no class."""
        text = label.strip()
        for i, cls in enumerate(self.classes):
            if text == str(cls):
                return i
        try:
            number = float(text)
        except ValueError:
            return None
        for i, cls in enumerate(self.classes):
            if not isinstance(cls, str) and float(cls) == number:
                return i
        return None


def output_columns(targets: Sequence[Target]) -> list[str]:
    return [column for t in targets for column in t.output_columns]


def output_slices(targets: Sequence[Target]) -> list[slice]:
    """The model-output columns of each target, in order."""
    slices, start = [], 0
    for t in targets:
        slices.append(slice(start, start + t.width))
        start += t.width
    return slices


def output_weights(weight, targets: Sequence[Target]) -> np.ndarray:
    """A run's blend weight for each prediction column: one number for all, or one per target (a K-class
    target's K probability columns share it)."""
    values = np.asarray(weight, dtype=np.float64)
    widths = [t.width for t in targets]
    if values.ndim == 0:
        return np.full(sum(widths), float(values))
    if len(values) == len(widths):
        return np.repeat(values, widths)
    if len(values) == sum(widths):
        return values
    raise ValueError(f"{len(values)} weights for {len(widths)} target(s) with {sum(widths)} prediction column(s)")


def as_targets(targets: Sequence[Target | str]) -> list[Target]:
    """Targets as given, or regression targets for bare names (how regression-only code calls metrics)."""
    return [t if isinstance(t, Target) else Target(str(t)) for t in targets]


def prior_prediction(y: np.ndarray, targets: Sequence[Target]) -> np.ndarray:
    """The prediction that knows only the labels `y` (n, n_targets) of training rows: each regression target's
    mean, each binary target's positive rate, each multiclass target's class frequencies."""
    y = np.asarray(y, dtype=np.float64)
    mean = y.mean(axis=0)
    if all(t.kind != "multiclass" for t in targets):
        return mean
    parts = []
    for i, t in enumerate(targets):
        if t.kind == "multiclass":
            parts.append(np.bincount(y[:, i].astype(np.int64), minlength=t.width) / len(y))
        else:
            parts.append(mean[i:i + 1])
    return np.concatenate(parts)
