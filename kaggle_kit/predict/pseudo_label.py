"""`kit pseudo-label`: a teacher's soft labels for unlabelled rows, written in the competition's training format.

The teacher is one run or a `kit ensemble` file. The output has the input columns of the texts file, one soft label
per target (the teacher's blend: folds averaged within a run, runs weighted per target, the plugin's stateless
post-processing such as clipping, never a fitted rounding), `<target>_spread` (the standard deviation across every
fold model of every run: how much the teacher disagrees with itself, to filter or weight rows), and, when every
run shares one fold split, `<target>@fold<k>`: the blend of the fold-k models only, which never saw fold k's
labels. `kit train --pseudo` gives fold k those labels, so its OOF stays honest (see train/pseudo.py); the
teacher's fold of every labelled row goes to `<out stem>.folds.json` for that check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.competition import Competition
from kaggle_kit.data.load import read_csv
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import atomic_path, write_json
from kaggle_kit.predict.inference import PredictionReport, predict_runs
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.tasks.targets import output_weights
from kaggle_kit.train.pseudo import check_soft_targets, fold_column, side_file, spread_column

log = logging.getLogger(__name__)


def shared_folds(run_paths: Sequence[Path]) -> pd.DataFrame | None:
    """The runs' common fold split (id, fold), or None when the runs were split differently."""
    splits = []
    for path in run_paths:
        csv = RunDir(Path(path)).folds_csv
        if not csv.is_file():
            return None
        splits.append(pd.read_csv(csv, dtype=str))
    first = splits[0]
    return first if all(s.equals(first) for s in splits[1:]) else None


def pseudo_label(comp: Competition, texts: Path, run_paths: Sequence[Path], weights: np.ndarray | None,
                 folds: Sequence[Sequence[int]] | None, out: Path, device: str = "auto") -> pd.DataFrame:
    check_soft_targets(comp, "kit pseudo-label")
    df = read_csv(texts)
    schema = comp.schema
    missing = [c for c in schema.test_columns() if c not in df.columns]
    if missing:
        raise KitError(f"--texts {texts}: missing column(s) {', '.join(map(repr, missing))} (the {comp.name} test "
                       f"format: {', '.join(schema.test_columns())})")
    df = df[schema.test_columns()].copy()
    from kaggle_kit.data.load import validate_test

    validate_test(df, texts, comp)
    report = PredictionReport(keep_members=True)
    weight_rows = [output_weights(w, schema.targets) for w in (weights if weights is not None
                                                                else [1.0] * len(run_paths))]
    predict_runs(comp, df, run_paths, list(weights) if weights is not None else None, device=device,
                 data_dir=texts.parent, folds=folds, report=report)

    def blend(members: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
        by_run: dict[int, list[np.ndarray]] = {}
        for run_index, _, pred in members:
            by_run.setdefault(run_index, []).append(pred)
        total = sum(weight_rows[i] for i in by_run)
        mixed = sum(weight_rows[i] * np.mean(p, axis=0) for i, p in by_run.items()) / total
        return comp.postprocess(mixed)

    out_df = df.copy()
    labels = blend(report.members)
    spread = np.std(np.stack([p for _, _, p in report.members]), axis=0)
    for j, name in enumerate(schema.target_names):
        out_df[name] = labels[:, j]
        out_df[spread_column(name)] = spread[:, j]
    split = shared_folds(run_paths)
    n_folds = int(split["fold"].astype(int).max()) + 1 if split is not None else None
    if n_folds is not None:
        for fold in range(n_folds):  # the folds some run trained (with --train-folds, not all)
            members = [m for m in report.members if m[1] == fold]
            if members:
                per_fold = blend(members)
                for j, name in enumerate(schema.target_names):
                    out_df[fold_column(name, fold)] = per_fold[:, j]
    else:
        log.warning("WARNING: the teacher runs do not share one fold split: no per-fold labels, so a student "
                    "trained on %s sees labels from teachers that saw its validation rows (its OOF will be "
                    "optimistic)", out)
    with atomic_path(out) as tmp:
        out_df.to_csv(tmp, index=False)
    if n_folds is not None:
        write_json(side_file(out), {"teacher": [str(p) for p in run_paths], "folds": n_folds,
                                    "fold_of": dict(zip(split[schema.id_column], split["fold"].astype(int),
                                                        strict=True))})
    return out_df
