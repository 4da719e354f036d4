"""Fold strategies. All are seeded: the same seed and data always give the same folds.

scikit-learn is imported when folds are made, not when a plugin is loaded: prediction never makes folds, and
the import is a second of `kit predict`'s start-up on a small CPU."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _assign(splits, n_rows: int) -> np.ndarray:
    folds = np.full(n_rows, -1, dtype=np.int64)
    for fold, (_, valid_idx) in enumerate(splits):
        folds[valid_idx] = fold
    return folds


def kfold(df: pd.DataFrame, targets: list[str], n_folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import KFold

    return _assign(KFold(n_folds, shuffle=True, random_state=seed).split(df), len(df))


def multilabel_stratified(df: pd.DataFrame, targets: list[str], n_folds: int, seed: int) -> np.ndarray:
    """Every (target, score level) pair becomes one binary label, so each fold sees every level of every target."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    one_hot = pd.get_dummies(df[targets].astype(str), columns=targets).to_numpy(dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return _assign(splitter.split(np.zeros(len(df)), one_hot), len(df))


def stratified_group(group_column: str, n_bins: int = 5):
    """Folds where no group crosses train/validation, stratified on the (binned) first target."""

    def _split(df: pd.DataFrame, targets: list[str], n_folds: int, seed: int) -> np.ndarray:
        from sklearn.model_selection import StratifiedGroupKFold

        score = df[targets[0]].to_numpy(dtype=np.float64)
        levels = np.unique(score)
        strata = np.searchsorted(levels, score) if len(levels) <= 20 else pd.qcut(score, n_bins, labels=False)
        groups = df[group_column].astype(str).to_numpy()
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return _assign(splitter.split(np.zeros(len(df)), strata, groups), len(df))

    _split.__name__ = f"stratified_group({group_column})"
    return _split
