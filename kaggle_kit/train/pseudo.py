"""Pseudo-labelled rows (`--pseudo FILE`) and distillation from a teacher's OOF predictions (`--distill FILE`).

Keeping the OOF honest: pseudo rows only ever join a fold's TRAINING side, and a pseudo row whose model input is a
labelled row's is dropped (an unlabelled set scraped from an earlier competition often holds the training essays
themselves; with a teacher's label it would put a validation row into training). A teacher trained on every fold
has also seen the validation rows' labels, so `kit pseudo-label` writes one label column per teacher fold as well
(`<target>@fold<k>`, from the models that never saw fold k) and a side file with the teacher's fold of every
labelled row: fold k of the student trains on `@fold<k>`, after checking that the student's folds are the
teacher's. Without per-fold columns (teachers that do not share folds) the blended labels are used and the run
says that its OOF is optimistic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.competition import Competition
from kaggle_kit.config import TrainConfig
from kaggle_kit.data.load import read_csv
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.train.trainer import FoldData

log = logging.getLogger(__name__)


def spread_column(target: str) -> str:
    return f"{target}_spread"


def fold_column(target: str, fold: int) -> str:
    return f"{target}@fold{fold}"


def side_file(path: str | Path) -> Path:
    """The teacher's fold assignment beside a pseudo-label file: pseudo.csv -> pseudo.folds.json."""
    path = Path(path)
    return path.with_name(path.stem + ".folds.json")


def check_soft_targets(comp: Competition, what: str) -> None:
    """Soft labels are regression (or [0, 1] probability) targets; a K-class target would need soft cross-entropy."""
    classes = [t.name for t in comp.schema.targets if t.width > 1]
    if classes:
        raise KitError(f"{what}: soft labels for the multi-class target(s) {', '.join(classes)} are not supported "
                       f"(regression and binary targets only)")


def _numbers(df: pd.DataFrame, column: str, path: Path, id_column: str) -> np.ndarray:
    values = pd.to_numeric(df[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row = int(bad[0])
        raise KitError(f"{path} row {row + 1} ({id_column}={df[id_column].iat[row]}), column {column!r}: "
                       f"{df[column].iat[row]!r} is not a number")
    return values


@dataclass
class PseudoRows:
    """Pseudo-labelled rows, tokenised: the blended labels and, when the file has them, one label set per fold."""

    ids: list[list[int]]
    row_ids: np.ndarray
    blend: np.ndarray
    per_fold: dict[int, np.ndarray]
    n_dropped: int

    def for_fold(self, fold: int | None) -> FoldData:
        """The labels fold `fold` trains on: its own teacher fold's where the file has them; the blend for the
        full-train model (None), which validates nothing."""
        y = self.per_fold.get(fold, self.blend) if fold is not None else self.blend
        return FoldData(self.ids, y.astype(np.float32), self.row_ids)


def load_pseudo(comp: Competition, cfg: TrainConfig, train_df: pd.DataFrame, tokenizer, data_dir: Path | None,
                files: dict[str, Path], train_ids: list[list[int]], folds: np.ndarray) -> PseudoRows:
    """Read, check and tokenise `cfg.pseudo`; drop rows that are labelled rows; check per-fold labels' folds."""
    from kaggle_kit.predict.inference import build_model_inputs

    check_soft_targets(comp, "--pseudo")
    path = Path(cfg.pseudo)
    df = read_csv(path)
    schema = comp.schema
    missing = [c for c in (*schema.test_columns(), *schema.target_names) if c not in df.columns]
    if missing:
        raise KitError(f"--pseudo {path}: missing column(s) {', '.join(map(repr, missing))} (a kit pseudo-label "
                       f"file has the competition's input columns and a soft label per target)")
    blend = np.stack([_numbers(df, t, path, schema.id_column) for t in schema.target_names], axis=1)
    per_fold = {}
    for fold in range(cfg.folds):
        columns = [fold_column(t, fold) for t in schema.target_names]
        if all(c in df.columns for c in columns):
            per_fold[fold] = np.stack([_numbers(df, c, path, schema.id_column) for c in columns], axis=1)
    ids = build_model_inputs(comp, df, tokenizer, cfg, data_dir, files, split="test")
    labelled = {tuple(x) for x in train_ids}
    labelled_ids = set(train_df[schema.id_column].astype(str))
    keep = np.array([tuple(x) not in labelled and str(i) not in labelled_ids
                     for x, i in zip(ids, df[schema.id_column], strict=True)])
    n_dropped = int((~keep).sum())
    if n_dropped:
        log.warning("--pseudo %s: dropped %d of %d rows whose id or model input is a labelled row's (they would "
                    "put validation rows into training)", path, n_dropped, len(df))
    if not keep.any():
        raise KitError(f"--pseudo {path}: every row is a labelled row of the training data; nothing to add")
    if per_fold:
        _check_teacher_folds(path, train_df[schema.id_column].astype(str).to_numpy(), folds)
    without = [f for f in cfg.fold_list() if f not in per_fold]
    if without:
        log.warning("WARNING: --pseudo %s has no per-fold labels (<target>@fold<k>) for fold(s) %s: they train on "
                    "the blended labels of teachers that saw their validation rows, so their OOF is optimistic",
                    path, ",".join(map(str, without)))
    log.info("--pseudo %s: %d pseudo-labelled rows (stage %s, weight %g)%s", path, int(keep.sum()),
             cfg.pseudo_stage, cfg.pseudo_weight, ", per-fold labels" if per_fold else "")
    index = np.flatnonzero(keep)
    return PseudoRows([ids[i] for i in index], df[schema.id_column].to_numpy()[index], blend[index],
                      {f: v[index] for f, v in per_fold.items()}, n_dropped)


def _check_teacher_folds(path: Path, row_ids: np.ndarray, folds: np.ndarray) -> None:
    """Per-fold labels are honest only if the student's fold k is the teacher's fold k, row for row."""
    side = side_file(path)
    if not side.is_file():
        raise KitError(f"--pseudo {path}: per-fold labels need the teacher's folds in {side} (kit pseudo-label "
                       f"writes it beside the file)")
    teacher = read_json(side).get("fold_of", {})
    for row_id, fold in zip(row_ids, folds, strict=True):
        theirs = teacher.get(str(row_id))
        if theirs is None or int(theirs) != int(fold):
            raise KitError(f"--pseudo {path}: this run puts row {row_id} in fold {fold}, the teacher had it in "
                           f"{'no fold' if theirs is None else f'fold {theirs}'}; per-fold labels would leak "
                           f"validation labels. Train with the teacher's --folds, --fold-seed and data")


def teacher_files(spec: str) -> list[Path]:
    """--distill's teachers: each a run folder (its oof.csv) or an OOF file, comma-separated."""
    files = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        path = Path(part)
        if path.is_dir():
            path = path / "oof.csv"
        if not path.is_file():
            raise KitError(f"--distill {part}: not an OOF file, nor a run folder with an oof.csv")
        files.append(path)
    if not files:
        raise KitError("--distill: names no teacher (give run folders or OOF files, comma-separated)")
    return files


def _teacher_predictions(comp: Competition, path: Path) -> pd.DataFrame:
    """One teacher's OOF predictions, one column per output column (a K-class target's K probabilities)."""
    df = read_csv(path)
    schema = comp.schema
    columns = [c for t in schema.targets for c in t.output_columns]
    missing = [c for c in (schema.id_column, *columns) if c not in df.columns]
    if missing:
        raise KitError(f"--distill {path}: missing column(s) {', '.join(map(repr, missing))} (expected an OOF "
                       f"file: {schema.id_column} and one prediction per output column)")
    teacher = pd.DataFrame(np.stack([_numbers(df, c, path, schema.id_column) for c in columns], axis=1),
                           index=df[schema.id_column].astype(str))
    if teacher.index.duplicated().any():
        raise KitError(f"--distill {path}: id {teacher.index[teacher.index.duplicated()][0]!r} appears twice")
    return teacher


def distilled_targets(comp: Competition, cfg: TrainConfig, train_df: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """Training targets with the teachers' OOF (averaged over teachers) mixed in, for rows every teacher predicted.

    Regression/binary targets: (1 - w) y + w teacher. Multi-class targets: y keeps the class indices and gains
    one column per output, the teachers' class distribution softened by T (softmax(log p / T): the log of a
    softmax probability is its logit up to a per-row constant, which a softmax ignores), NaN for rows without a
    teacher; the trainer's DistillLoss mixes cross-entropy with the KL to it."""
    multiclass = [t.name for t in comp.schema.targets if t.kind == "multiclass"]
    if multiclass and len(multiclass) != len(comp.schema.targets):
        raise KitError(f"--distill: {comp.name} mixes multi-class targets ({', '.join(multiclass)}) with others; "
                       f"distillation takes either kind alone")
    paths = teacher_files(cfg.distill)
    teachers = [_teacher_predictions(comp, p) for p in paths]
    shared = teachers[0].index
    for teacher in teachers[1:]:
        shared = shared.intersection(teacher.index)
    row_ids = train_df[comp.schema.id_column].astype(str)
    covered = row_ids.isin(shared).to_numpy()
    named = ",".join(map(str, paths))
    if not covered.any():
        raise KitError(f"--distill {named}: no id of the training data has a prediction from every teacher")
    mean = np.mean([t.loc[row_ids[covered]].to_numpy() for t in teachers], axis=0)
    w = cfg.distill_weight
    if multiclass:
        soft = np.full((len(y), mean.shape[1]), np.nan)
        from kaggle_kit.tasks.targets import output_slices

        for columns in output_slices(comp.schema.targets):
            logits = np.log(np.clip(mean[:, columns], 1e-7, None)) / cfg.distill_temperature
            logits -= logits.max(axis=1, keepdims=True)
            soft[covered, columns] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        log.info("--distill %s: %d of %d training rows learn (1 - %g) x cross-entropy + %g x T^2 x KL to the "
                 "%d teacher(s)' class distribution at T = %g%s", named, int(covered.sum()), len(y), w, w,
                 len(paths), cfg.distill_temperature, "" if covered.all() else " (the rest: cross-entropy alone)")
        return np.concatenate([y.astype(np.float64), soft], axis=1).astype(np.float32)
    mixed = y.astype(np.float64).copy()
    mixed[covered] = (1 - w) * y[covered] + w * mean
    log.info("--distill %s: %d of %d training rows get (1 - %g) x label + %g x the teacher's OOF prediction%s",
             named, int(covered.sum()), len(y), w, w,
             "" if covered.all() else " (the rest keep their label)")
    return mixed.astype(np.float32)
