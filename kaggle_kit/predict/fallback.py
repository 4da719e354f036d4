"""Hidden-test tolerance: rows that cannot be predicted get the run's fallback prediction instead of a crash.

Kaggle's hidden test is first seen when the notebook reruns, and a notebook that stops there scores nothing.
A row whose input text is empty or blank, or whose input the plugin's builder cannot make (an unknown CPC context
in USPPPM, a missing essay file in FBE), gets the fallback: a final prediction (the same space as `predict_runs`
returns: after post-processing, one value per prediction column) that training records in the run's
fallback.json. The plugin declares it (`Competition.fallback`); by default it is the training labels' mean for
regression targets, the positive rate for binary ones and the class frequencies for multiclass ones, after the
plugin's stateless `postprocess` (the fitted post-processor is not applied: its state was fitted on model outputs,
and the prior already is a final prediction). Several runs blend their fallbacks by the ensemble's weights.

The other rows are predicted by `predict_runs` on those rows alone, so they equal `kit predict` on a test file
without the bad rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.predict.submission import submission_frame
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.tasks.targets import output_weights, prior_prediction

log = logging.getLogger(__name__)

EMPTY_TEXT = "empty text"
NOT_BUILT = "input could not be built"
# Builds tried while looking for the rows a builder fails on; past it, the failing parts left are given up whole.
MAX_PROBES = 2000


# ---- the fallback value ---------------------------------------------------------------------------------------

def fallback_values(comp: Competition, values: Any, what: str) -> np.ndarray:
    """`values` as one finite number per prediction column (a single number stands for every column)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise KitError(f"{comp.name}: {what} is not a number or a list of numbers ({values!r})") from None
    if array.ndim == 0:
        array = np.full(comp.n_outputs, float(array))
    if array.shape != (comp.n_outputs,):
        raise KitError(f"{comp.name}: {what} has {array.size} value(s); the plugin has {comp.n_outputs} prediction "
                       f"column(s) ({', '.join(comp.schema.output_columns)})")
    if not np.all(np.isfinite(array)):
        raise KitError(f"{comp.name}: {what} is not finite ({array.tolist()})")
    return array


def default_fallback(comp: Competition, labels: np.ndarray) -> np.ndarray:
    """The prediction that knows only the training labels, post-processed as every prediction is."""
    prior = prior_prediction(labels, comp.schema.targets)
    return np.asarray(comp.postprocess(prior[None, :]), dtype=np.float64)[0]


def training_fallback(comp: Competition, labels: np.ndarray) -> tuple[np.ndarray, str]:
    """The fallback a run trained on `labels` (n, n_targets, encoded) records, and where it came from."""
    declared = comp.fallback
    if declared is None:
        return default_fallback(comp, labels), "default: the training labels' mean / class prior"
    if callable(declared):
        return (fallback_values(comp, declared(np.asarray(labels, dtype=np.float64), comp.schema.targets),
                                "the plugin's fallback"), "the plugin's fallback, from the training labels")
    return fallback_values(comp, declared, "the plugin's fallback"), "the plugin's fallback (a constant)"


def fallback_record(comp: Competition, labels: np.ndarray) -> dict[str, Any]:
    """What fallback.json holds: the value per prediction column (by name, so a reordered plugin still reads it)."""
    values, source = training_fallback(comp, labels)
    return {"prediction": dict(zip(comp.schema.output_columns, map(float, values), strict=True)), "source": source,
            "training_rows": len(labels)}


def read_fallback(comp: Competition, path: Path) -> tuple[np.ndarray, str]:
    record = read_json(path)
    values = record.get("prediction", {})
    missing = [c for c in comp.schema.output_columns if c not in values]
    if missing:
        raise KitError(f"{path}: no fallback value for the prediction column(s) {', '.join(missing)}")
    return (fallback_values(comp, [values[c] for c in comp.schema.output_columns], str(path)),
            record.get("source", "recorded"))


def neutral_fallback(comp: Competition) -> np.ndarray:
    """The last resort of a run with neither a fallback.json, nor its training data, nor oof.csv: the middle of each
    regression target's range (0 without one), 0.5 for binary targets, equal class probabilities."""
    parts = []
    for target in comp.schema.targets:
        grid = target.grid() if target.kind == "regression" else None
        if target.kind == "multiclass":
            parts += [1.0 / target.width] * target.width
        elif target.kind == "binary":
            parts.append(0.5)
        elif grid is not None:
            parts.append(float(np.median(grid)))
        elif target.low is not None and target.high is not None:
            parts.append((target.low + target.high) / 2)
        else:
            parts.append(0.0)
    return np.asarray(comp.postprocess(np.asarray(parts)[None, :]), dtype=np.float64)[0]


def run_fallback(comp: Competition, run: RunDir) -> tuple[np.ndarray, str]:
    """A run's fallback: its fallback.json; for a run trained before runs recorded one, computed from its training
    labels when train.csv is still where it trained, else the mean of its OOF predictions, else neutral values
    (each said in a warning)."""
    if run.fallback.is_file():
        return read_fallback(comp, run.fallback)
    from kaggle_kit.data.load import load_train

    why = f"{run.path} has no {run.fallback.name} (trained before runs recorded one)"
    try:
        data_dir = run.data_dir()
        train = load_train(comp, Path(data_dir)) if data_dir is not None else None
    except (KitError, OSError, ValueError):
        train = None
    if train is not None:
        values, source = training_fallback(comp, train[comp.schema.target_names].to_numpy(np.float64))
        source = f"{source}, computed from {Path(data_dir) / 'train.csv'}"
    elif run.oof.is_file():
        oof = pd.read_csv(run.oof)
        values = np.asarray(comp.postprocess(oof[comp.schema.output_columns].to_numpy(np.float64).mean(axis=0,
                                                                                                    keepdims=True)))[0]
        source = f"the mean of {run.oof.name}'s predictions (its training data is not here)"
    else:
        values, source = neutral_fallback(comp), "neutral values (no training data and no oof.csv here)"
    log.warning("%s: its fallback is %s", why, source)
    return fallback_values(comp, values, source), source


def blended_fallback(comp: Competition, run_paths: Sequence[Path],
                     weights: Sequence[float | Sequence[float]] | None = None) -> np.ndarray:
    """The runs' fallbacks blended by their weights (one per run, or one per target), as their predictions are."""
    weights = list(weights) if weights is not None else [1.0] * len(run_paths)
    total = np.zeros(comp.n_outputs)
    used = np.zeros(comp.n_outputs)
    for path, weight in zip(run_paths, weights, strict=True):
        columns = output_weights(weight, comp.schema.targets)
        total += columns * run_fallback(comp, RunDir(Path(path)))[0]
        used += columns
    return total / np.where(used > 0, used, 1.0)


# ---- the rows that get it -------------------------------------------------------------------------------------

@dataclass
class FallbackRows:
    """Which test rows got the fallback prediction, and why (row position -> (kind, detail))."""

    total: int
    reasons: dict[int, tuple[str, str]] = field(default_factory=dict)
    value: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.reasons)

    def summary(self) -> str:
        """'3 of 2,700 test rows got the fallback prediction (2 empty text, 1 input could not be built: ...)'."""
        if not self.reasons:
            return f"all {self.total:,} test rows were predicted (none got the fallback prediction)"
        kinds: dict[str, list[str]] = {}
        for kind, detail in self.reasons.values():
            kinds.setdefault(kind, []).append(detail)
        parts = [f"{len(details)} {kind}" + (f": {details[0]}" if kind == NOT_BUILT else "")
                 for kind, details in kinds.items()]
        return f"{self.count:,} of {self.total:,} test rows got the fallback prediction ({', '.join(parts)})"

    def record(self, ids: Sequence[Any]) -> dict[str, Any]:
        """For kit_run_report.json: counts per kind, and the first rows with their reasons."""
        counts: dict[str, int] = {}
        for kind, _ in self.reasons.values():
            counts[kind] = counts.get(kind, 0) + 1
        rows = [{"id": str(ids[i]), "reason": kind, "detail": detail}
                for i, (kind, detail) in sorted(self.reasons.items())[:50]]
        return {"count": self.count, "of": self.total, "kinds": counts, "summary": self.summary(), "rows": rows,
                "value": self.value}


def empty_text_rows(comp: Competition, df: pd.DataFrame) -> dict[int, tuple[str, str]]:
    """Rows whose text in an input column is empty or only whitespace."""
    found: dict[int, tuple[str, str]] = {}
    for column in comp.schema.input_columns:
        for row in np.flatnonzero(df[column].astype(str).str.strip().to_numpy() == ""):
            found.setdefault(int(row), (EMPTY_TEXT, f"column {column!r}"))
    return found


def failing_rows(build: Callable[[pd.DataFrame], object], df: pd.DataFrame,
                 max_probes: int = MAX_PROBES) -> dict[int, str]:
    """Rows (positions in `df`) that `build` cannot make inputs for, with its message. All rows are built at once
    first; only when that fails are the rows split in halves, again and again, down to the failing rows (a few
    builds per bad row, not one per row)."""
    probes = 0

    def error_of(rows: np.ndarray) -> str | None:
        nonlocal probes
        probes += 1
        try:
            build(df.iloc[rows].reset_index(drop=True))
        except Exception as err:  # noqa: BLE001 - whatever the plugin's builder raises makes the row unusable
            return str(err).strip() or type(err).__name__
        return None

    found: dict[int, str] = {}

    def search(rows: np.ndarray, message: str) -> None:
        if len(rows) == 1 or probes >= max_probes:
            found.update((int(r), message) for r in rows)
            return
        before = len(found)
        for part in np.array_split(rows, 2):
            part_error = error_of(part)
            if part_error is not None:
                search(part, part_error)
        if len(found) == before:  # only the rows together fail: none of them alone can be blamed, so all are
            found.update((int(r), message) for r in rows)

    rows = np.arange(len(df))
    # rows that fail only together with others may still fail once the blamed rows are out: search what is left
    # until it builds (or the probes run out and the rest is blamed)
    while len(rows):
        error = error_of(rows)
        if error is None:
            break
        if probes >= max_probes:
            found.update((int(r), error) for r in rows)
            break
        search(rows, error)
        rows = np.array([r for r in rows if int(r) not in found], dtype=np.int64)
    return found


def unusable_rows(comp: Competition, df: pd.DataFrame, run_paths: Sequence[Path],
                  data_dir: Path | None) -> dict[int, tuple[str, str]]:
    """Rows of `df` that get the fallback: empty or blank texts, then rows any run's input builder fails on (built
    with that run's own input format, seed and extra files, as `predict_runs` builds them)."""
    from kaggle_kit.predict.inference import check_run_for, input_context, load_tokenizer, run_files

    bad = empty_text_rows(comp, df)
    builders = []
    for path in run_paths:
        run = RunDir(Path(path))
        cfg = check_run_for(comp, run)
        ctx = input_context(comp, load_tokenizer(run.tokenizer), cfg, data_dir, run_files(comp, run, cfg, data_dir))
        builders.append(partial(_build, comp, ctx))
    # rows one run drops can change what another run builds (inputs that depend on other rows): repeat until every
    # run builds the rows left
    changed = True
    while changed:
        changed = False
        for build in builders:
            rest = np.array([i for i in range(len(df)) if i not in bad], dtype=np.int64)
            if not len(rest):
                return bad
            failed = failing_rows(build, df.iloc[rest].reset_index(drop=True))
            bad.update((int(rest[i]), (NOT_BUILT, message)) for i, message in failed.items())
            changed = changed or bool(failed)
    return bad


def _build(comp: Competition, ctx, rows: pd.DataFrame) -> list[str]:
    """The plugin's inputs for `rows`; a result that is not one string per row (a NaN from an unknown key) is a
    failure too, so the search can find the row instead of tokenising failing for all of them."""
    texts = comp.build_inputs(rows, ctx)
    if len(texts) != len(rows):
        raise ValueError(f"the input builder returned {len(texts)} inputs for {len(rows)} rows")
    wrong = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if wrong:
        raise ValueError(f"the input builder returned {type(texts[wrong[0]]).__name__} {texts[wrong[0]]!r}, not "
                         f"a text")
    return texts


def predict_with_fallback(comp: Competition, df: pd.DataFrame, run_paths: Sequence[Path],
                          weights: Sequence[float | Sequence[float]] | None = None, data_dir: Path | None = None,
                          **predict_options: Any) -> tuple[np.ndarray, FallbackRows]:
    """`predict_runs` on the rows it can predict, the runs' blended fallback on the others; every row gets a value,
    even when no row is usable. `predict_options` go to `predict_runs` as they are."""
    from kaggle_kit.predict.inference import predict_runs

    bad = unusable_rows(comp, df, run_paths, data_dir)
    good = np.array([i for i in range(len(df)) if i not in bad], dtype=np.int64)
    fallback = blended_fallback(comp, run_paths, weights) if bad else None
    preds = np.zeros((len(df), comp.n_outputs), dtype=np.float64)
    if len(good):
        preds[good] = predict_runs(comp, df.iloc[good].reset_index(drop=True), run_paths, weights, data_dir=data_dir,
                                   **predict_options)
    if fallback is not None:
        preds[sorted(bad)] = fallback
    return preds, FallbackRows(len(df), dict(sorted(bad.items())), [] if fallback is None else fallback.tolist())


def fallback_submission(comp: Competition, sample: pd.DataFrame, fallback: np.ndarray) -> pd.DataFrame:
    """Every row of the sample submission with the fallback prediction, in its columns' formats."""
    rows = sample[[comp.schema.id_column]].copy()
    preds = np.tile(np.asarray(fallback, dtype=np.float64), (len(rows), 1))
    return submission_frame(comp, rows, preds, sample)
