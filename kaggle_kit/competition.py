"""The plugin contract: what a competition declares. Plugins hold data, the shared machinery does the work."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from kaggle_kit.errors import KitError
from kaggle_kit.tasks.metrics import Metric
from kaggle_kit.tasks.targets import Target, output_columns

__all__ = ["Competition", "ExtraFile", "InputContext", "PostProcessor", "RowFile", "Schema", "Target", "clip",
           "identity"]


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

    @property
    def output_columns(self) -> list[str]:
        """The prediction columns (oof.csv): a target's name, or one column per class of a multiclass target."""
        return output_columns(self.targets)

    @property
    def n_outputs(self) -> int:
        return sum(t.width for t in self.targets)

    def submission_columns(self) -> list[str]:
        return [self.id_column, *(c for t in self.targets for c in t.submission_columns)]

    def __post_init__(self) -> None:
        if not isinstance(self.id_column, str) or not self.id_column:
            raise ValueError(f"schema: id_column {self.id_column!r} must be a column name")
        if not isinstance(self.input_columns, tuple) or not all(isinstance(c, str) and c for c in self.input_columns):
            raise ValueError(f"schema: input_columns {self.input_columns!r} must be a tuple of column names, e.g. "
                             f"('full_text',)")
        if (not isinstance(self.targets, tuple) or not self.targets
                or not all(isinstance(t, Target) for t in self.targets)):
            raise ValueError(f"schema: targets {self.targets!r} must be a non-empty tuple of Target(...)")
        columns = [self.id_column, *self.input_columns, *self.output_columns]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"schema: column name(s) {', '.join(map(repr, repeated))} used twice (inputs, targets "
                             f"and class columns must differ)")


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
class RowFile:
    """A file per row in the competition folder, named by one of the row's columns: Feedback Prize's essays,
    `train/<essay_id>.txt` for train.csv's rows and `test/<essay_id>.txt` for test.csv's.

    The kit checks every row has its file when it loads a CSV (one line naming the file, row and column), and
    `kit simulate` lays them out as Kaggle does; the input builder reads them with `ctx.row_file(...)`.
    """

    column: str
    pattern: str = "{split}/{value}.txt"

    def path(self, data_dir: Path, split: str, value: str) -> Path:
        return Path(data_dir) / self.pattern.format(split=split, value=value)


@dataclass(frozen=True)
class InputContext:
    """What an input builder may use besides the rows.

    `data_dir` is the competition's data folder of the rows being built (train.csv's at training, test.csv's at
    inference, on Kaggle the competition's input folder); `split` says which rows they are ("train" or "test"),
    so per-row files such as essay texts are found with `row_file`; `files` maps each of the plugin's
    `extra_files` to the copy the run carries (found in the data folder only when the run starts).
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
    split: str = "train"

    def row_file(self, row_file: RowFile, value: str) -> Path:
        """Where the row file named `value` of these rows is (`train/<value>.txt` at training)."""
        if self.data_dir is None:
            raise KitError(f"no data folder to find {row_file.pattern.format(split=self.split, value=value)} in")
        return row_file.path(self.data_dir, self.split, value)


InputBuilder = Callable[[pd.DataFrame, InputContext], list[str]]
FoldStrategy = Callable[[pd.DataFrame, list[str], int, int], np.ndarray]
PostProcess = Callable[[np.ndarray], np.ndarray]
# A final prediction (after post-processing), one value per prediction column or one for all; a callable gets the
# training labels (n, n_targets; class indices for classification targets) and the targets.
Fallback = float | Sequence[float] | Callable[[np.ndarray, Sequence[Target]], Sequence[float]]


@runtime_checkable
class PostProcessor(Protocol):
    """Post-processing fitted on the out-of-fold predictions (QWK thresholds, temperature scaling, ...).

    `kit train` calls `fit` once all folds are done, on oof.csv's predictions (n, n_outputs) and the encoded
    labels (n, n_targets); the JSON-able state it returns is saved in the run folder (postprocess.json), and
    `kit predict`, ensembles and the Kaggle notebook call `apply` with it. See kaggle_kit/tasks/postprocess.py.
    """

    name: str

    def fit(self, pred: np.ndarray, truth: np.ndarray, targets: Sequence[Target]) -> dict[str, Any]: ...

    def apply(self, pred: np.ndarray, state: dict[str, Any], targets: Sequence[Target]) -> np.ndarray: ...


def identity(pred: np.ndarray) -> np.ndarray:
    return pred


def clip(low: float, high: float) -> PostProcess:
    def _clip(pred: np.ndarray) -> np.ndarray:
        return np.clip(pred, low, high)

    _clip.__name__ = f"clip({low:g}, {high:g})"
    return _clip


# The built-in losses' names (kaggle_kit/tasks/losses.py's LOSSES, which imports torch: a plugin is checked
# without it; tests/kaggle_kit/test_competition.py keeps the two lists equal).
BUILT_IN_LOSSES = ("rmse", "mse", "smoothl1", "bce", "pearson", "cross-entropy")
# `kit train NAME` and runs/NAME/: a name that is also a folder name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")


def _metric_hint(value: Any) -> str:
    """The kaggle_kit.tasks.metrics constants, the one a string such as 'roc_auc' probably meant first."""
    from kaggle_kit.tasks import metrics

    known = {name: m for name, m in vars(metrics).items() if isinstance(m, Metric) and name.isupper()}
    text = str(value).lower()
    guess = [name for name, m in known.items() if m.name.lower() in text or name.lower() in text]
    hint = f"did you mean {guess[0]}? " if isinstance(value, str) and guess else ""
    return (f"{hint}use one of kaggle_kit.tasks.metrics' {', '.join(known)}, or declare your own "
            f"Metric(name, greater_is_better, per_column=...)")


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
    # A loss name: a built-in (kaggle_kit/tasks/losses.py) or one of `losses`.
    default_loss: str
    fold_strategy: FoldStrategy
    # Stateless, applied to every prediction (validation, OOF, test): clipping to the label range.
    postprocess: PostProcess = identity
    # Fitted on the OOF predictions once all folds are done; its state travels with the run (postprocess.json).
    postprocessor: PostProcessor | None = None
    # The plugin's own losses (name -> kaggle_kit.tasks.losses.LossSpec), accepted by --loss besides the built-ins.
    losses: Mapping[str, Any] = field(default_factory=dict)
    hidden_test_size: int = 1000
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_hint: str = ""
    # Files besides train.csv/test.csv that build_inputs reads (through ctx.files), at training and at inference.
    extra_files: tuple[ExtraFile, ...] = ()
    # Per-row files in the competition folder (essays by id), checked on load and laid out by `kit simulate`.
    row_files: tuple[RowFile, ...] = ()
    # Recorded in each run: bump it when a change to the plugin changes what an old run would predict.
    version: str = "1"
    # The prediction for a hidden-test row that cannot be predicted (empty text, an input that cannot be built):
    # None = the training labels' mean / class prior; a number or one per prediction column; or a callable
    # (labels, targets) -> values. Recorded in each run's fallback.json (kaggle_kit/predict/fallback.py).
    fallback: Fallback | None = None
    # With --head label-tokens: the label word of each class or score level (in classes / grid order) per target
    # name, for targets whose class names or level numbers 1..N are not the words a prompt's answer would use.
    label_words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Test-time training's `examples` source (`--ttt source=examples`): test frame -> the labelled examples it
    # carries, as rows of train.csv's columns (labels as written in train.csv). None: the test rows whose target
    # columns are all filled.
    test_time_examples: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    # With --head label-tokens: the answer cue that ends every prompt (its next token is the label word), for a
    # plugin whose inputs read better with another ("\nScore:"); --label-cue overrides it. None = " Answer:".
    label_cue: str | None = None

    def __post_init__(self) -> None:
        self._check_fields()
        for target in self.schema.targets:
            if self.metric.kinds is not None and target.kind not in self.metric.kinds:
                raise ValueError(f"{self.name}: metric {self.metric.name} does not score {target.kind} targets "
                                 f"({target.name!r}); it scores {', '.join(self.metric.kinds)}")
        for row_file in self.row_files:
            if row_file.column not in self.schema.test_columns():
                raise ValueError(f"{self.name}: row file column {row_file.column!r} is not a test.csv column")
        if self.postprocessor is not None and not isinstance(self.postprocessor, PostProcessor):
            raise ValueError(f"{self.name}: postprocessor needs a name, fit(pred, truth, targets) and "
                             f"apply(pred, state, targets)")

    def _check_fields(self) -> None:
        """Each field's type and values, so a mistake in a plugin is one line naming the plugin and the field,
        when it is declared, and not a traceback from deep inside a training run."""
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"Competition name {self.name!r} must be letters, digits, '.', '_' or '-' (it names "
                             f"`kit train NAME` and the runs/NAME/ folder)")
        name = self.name

        def bad(field_name: str, value: Any, needs: str) -> ValueError:
            return ValueError(f"{name}: {field_name} {value!r} {needs}")

        for field_name in ("title", "data_hint", "version"):
            if not isinstance(getattr(self, field_name), str):
                raise bad(field_name, getattr(self, field_name), "must be a string")
        if not isinstance(self.kaggle_slug, str) or not SLUG_PATTERN.fullmatch(self.kaggle_slug):
            raise bad("kaggle_slug", self.kaggle_slug, "must be the competition's URL name on Kaggle (lower-case "
                                                       "letters, digits and '-', e.g. 'feedback-prize-2021')")
        if not isinstance(self.schema, Schema):
            raise bad("schema", self.schema, "must be a kaggle_kit.competition.Schema")
        if not isinstance(self.metric, Metric):
            raise bad("metric", self.metric, f"is a {type(self.metric).__name__}, not a "
                                             f"kaggle_kit.tasks.metrics.Metric; {_metric_hint(self.metric)}")
        for field_name in ("build_inputs", "fold_strategy", "postprocess"):
            if not callable(getattr(self, field_name)):
                raise bad(field_name, getattr(self, field_name), "must be a function")
        if self.test_time_examples is not None and not callable(self.test_time_examples):
            raise bad("test_time_examples", self.test_time_examples, "must be a function (test frame -> labelled "
                                                                     "rows) or None")
        if (not isinstance(self.input_formats, tuple) or not self.input_formats
                or not all(isinstance(f, str) and f for f in self.input_formats)):
            raise bad("input_formats", self.input_formats, "must be a non-empty tuple of names, e.g. ('essay',) "
                                                           "(the first is the default --input-format)")
        self._check_losses(bad)
        self._check_label_words(bad)
        if not isinstance(self.presets, Mapping) or not all(
                isinstance(k, str) and isinstance(v, Mapping) for k, v in self.presets.items()):
            raise bad("presets", self.presets, "must map preset names to settings, e.g. {'quick': {'max_len': 256}}")
        if isinstance(self.hidden_test_size, bool) or not isinstance(self.hidden_test_size, int) or (
                self.hidden_test_size < 1):
            raise bad("hidden_test_size", self.hidden_test_size, "must be a whole number of rows, at least 1")
        for field_name, kind in (("extra_files", ExtraFile), ("row_files", RowFile)):
            value = getattr(self, field_name)
            if not isinstance(value, tuple) or not all(isinstance(v, kind) for v in value):
                raise bad(field_name, value, f"must be a tuple of {kind.__name__}(...)")

    def _check_label_words(self, bad: Callable[[str, Any, str], ValueError]) -> None:
        if self.label_cue is not None and (not isinstance(self.label_cue, str) or not self.label_cue.strip()):
            raise bad("label_cue", self.label_cue, "must be a non-empty string such as ' Answer:', or None")
        if not isinstance(self.label_words, Mapping):
            raise bad("label_words", self.label_words, "must map target names to label words")
        targets = {t.name: t for t in self.schema.targets}
        for name, words in self.label_words.items():
            if name not in targets:
                raise bad("label_words", name, f"is not a target (targets: {', '.join(targets)})")
            target = targets[name]
            levels = target.grid()
            count = len(levels) if levels is not None else None
            if (not isinstance(words, tuple) or not all(isinstance(w, str) and w.strip() for w in words)
                    or len(words) != count or len(set(words)) != len(words)):
                raise bad(f"label_words[{name!r}]", words, f"must be a tuple of {count} different words, one per "
                                                           f"{'class' if target.kind != 'regression' else 'level'}")

    def _check_losses(self, bad: Callable[[str, Any, str], ValueError]) -> None:
        if not isinstance(self.losses, Mapping) or not all(isinstance(k, str) and k for k in self.losses):
            raise bad("losses", self.losses, "must map loss names to kaggle_kit.tasks.losses.LossSpec")
        if self.losses:  # LossSpec needs torch, which a plugin declaring its own losses has imported already
            from kaggle_kit.tasks.losses import LossSpec

            for loss_name, spec in self.losses.items():
                if not isinstance(spec, LossSpec):
                    raise bad(f"losses[{loss_name!r}]", spec, f"is a {type(spec).__name__}, not a "
                                                              f"kaggle_kit.tasks.losses.LossSpec")
        known = list(dict.fromkeys([*BUILT_IN_LOSSES, *self.losses]))
        if not isinstance(self.default_loss, str) or self.default_loss not in known:
            raise bad("default_loss", self.default_loss, f"is not a built-in loss or one of the plugin's losses "
                                                         f"({', '.join(known)})")

    @property
    def n_outputs(self) -> int:
        return self.schema.n_outputs

    @property
    def task(self) -> str:
        """The task in a few words, for `kit list`: the target kinds, and what is fitted on the OOF predictions."""
        kinds = []
        for target in self.schema.targets:
            kind = f"{target.width}-class" if target.kind == "multiclass" else target.kind
            if kind not in kinds:
                kinds.append(kind)
        text = ", ".join(kinds)
        if len(self.schema.targets) > 1:
            text += f" x{len(self.schema.targets)}"
        if self.postprocessor is not None:
            text += f", fits {self.postprocessor.name}"
        return text

    def download_command(self) -> str:
        return f"kit data {self.name}"

    def data_files(self) -> tuple[str, ...]:
        """What a complete data folder holds: the competition's three files plus the plugin's extra files."""
        return ("train.csv", "test.csv", "sample_submission.csv", *(extra.name for extra in self.extra_files))
