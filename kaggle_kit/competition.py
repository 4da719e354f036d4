"""The plugin contract: what a competition declares. Plugins hold data, the shared machinery does the work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kaggle_kit.tasks.metrics import Metric


@dataclass(frozen=True)
class Target:
    """A label column and the values it may take (checked on every row of train.csv)."""

    name: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    allowed: tuple[float, ...] | None = None

    def problem(self, value: float) -> str | None:
        """Why `value` is not a valid label, or None when it is."""
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


@dataclass(frozen=True)
class Schema:
    """Columns of train.csv / test.csv / sample_submission.csv."""

    id_column: str
    input_columns: tuple[str, ...]
    targets: tuple[Target, ...]

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    def train_columns(self) -> list[str]:
        return [self.id_column, *self.input_columns, *self.target_names]

    def test_columns(self) -> list[str]:
        return [self.id_column, *self.input_columns]

    def submission_columns(self) -> list[str]:
        return [self.id_column, *self.target_names]


@dataclass(frozen=True)
class DatasetFile:
    """A file the competition's own download lacks, taken from a public Kaggle dataset by `kit data`."""

    dataset: str  # owner/slug, e.g. xhlulu/cpc-codes
    file: str  # its name inside the dataset, e.g. titles.csv


@dataclass(frozen=True)
class ExtraFile:
    """A file an input builder reads besides the rows (USPPPM's CPC titles).

    The kit finds it when a run starts (`extra: {option: PATH}` in --config, else `name` or one of `alternatives`
    in the data folder), copies it into the run folder, and from then on the run, its predictions and its bundle
    use that copy: an old run never depends on where the file once was. `kit data` saves it as `name` from
    `source` when the competition download lacks it.
    """

    name: str
    alternatives: tuple[str, ...] = ()
    option: str | None = None
    hint: str = ""
    source: DatasetFile | None = None


@dataclass(frozen=True)
class InputContext:
    """What an input builder may use besides the rows.

    `data_dir` is the competition's data folder of the rows being built (train.csv's at training, test.csv's at
    inference: per-row files such as essay texts live there); `files` maps each of the plugin's `extra_files` to
    the copy the run carries (found in the data folder only when the run starts).
    """

    sep_token: str
    input_format: str
    seed: int
    data_dir: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    # Renders chat messages ([{"role": "user", "content": ...}]) with the tokenizer's own chat template, for
    # prompt-style input formats of decoder LLMs; a plain "role: content" layout where the tokenizer has none.
    chat: Callable[[list[dict[str, str]]], str] | None = None


InputBuilder = Callable[[pd.DataFrame, InputContext], list[str]]
FoldStrategy = Callable[[pd.DataFrame, list[str], int, int], np.ndarray]
PostProcess = Callable[[np.ndarray], np.ndarray]


def identity(pred: np.ndarray) -> np.ndarray:
    return pred


def clip(low: float, high: float) -> PostProcess:
    def _clip(pred: np.ndarray) -> np.ndarray:
        return np.clip(pred, low, high)

    _clip.__name__ = f"clip({low:g}, {high:g})"
    return _clip


@dataclass(frozen=True)
class Competition:
    """Everything the trainer, predictor and bundler need to know about one competition."""

    name: str
    title: str
    kaggle_slug: str
    schema: Schema
    build_inputs: InputBuilder
    input_formats: tuple[str, ...]
    metric: Metric
    default_loss: str
    fold_strategy: FoldStrategy
    postprocess: PostProcess = identity
    hidden_test_size: int = 1000
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_hint: str = ""
    # Files besides train.csv/test.csv that build_inputs reads (through ctx.files), at training and at inference.
    extra_files: tuple[ExtraFile, ...] = ()
    # Recorded in each run: bump it when a change to the plugin changes what an old run would predict.
    version: str = "1"

    @property
    def n_outputs(self) -> int:
        return len(self.schema.targets)

    def download_command(self) -> str:
        return f"kit data {self.name}"

    def data_files(self) -> tuple[str, ...]:
        """What a complete data folder holds: the competition's three files plus the plugin's extra files."""
        return ("train.csv", "test.csv", "sample_submission.csv", *(extra.name for extra in self.extra_files))
