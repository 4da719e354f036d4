"""The submission as Kaggle scores it, from predictions: torch-free, so the notebook's last-resort guard can still
write one when torch or the model cannot be imported."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError
from kaggle_kit.tasks.metrics import predicted_labels
from kaggle_kit.tasks.targets import output_slices


def submission_frame(comp: Competition, test_df: pd.DataFrame, preds: np.ndarray,
                     sample_submission: pd.DataFrame | None = None) -> pd.DataFrame:
    """Predictions in the sample submission's row and column order (or the test order without one), each target
    as it is submitted: a score, a whole number, a probability, one probability per class, or a class label."""
    id_col = comp.schema.id_column
    columns: dict[str, np.ndarray] = {id_col: test_df[id_col].to_numpy()}
    for target, block in zip(comp.schema.targets, output_slices(comp.schema.targets), strict=True):
        pred = preds[:, block] if target.width > 1 else preds[:, block.start]
        if target.submit_format in ("score", "probability"):
            columns[target.name] = pred
        elif target.submit_format == "probabilities":
            columns.update(zip(target.output_columns, pred.T, strict=True))
        elif target.submit_format == "integer":
            columns[target.name] = np.round(predicted_labels(pred, target)).astype(np.int64)
        else:
            labels = predicted_labels(pred, target).astype(np.int64)
            columns[target.name] = np.array(target.classes, dtype=object)[labels]
    sub = pd.DataFrame(columns)
    if sample_submission is None:
        return sub
    missing = set(sample_submission[id_col]) - set(sub[id_col])
    if missing:
        raise KitError(f"sample submission has {len(missing)} id(s) not in the test file, e.g. {sorted(missing)[0]!r}")
    columns = [c for c in sample_submission.columns if c in sub.columns]
    return sub.set_index(id_col).loc[sample_submission[id_col].to_numpy()].reset_index()[columns]


def submission_difference(comp: Competition, first: pd.DataFrame, second: pd.DataFrame) -> float:
    """The largest absolute difference between two submissions' predictions (inf where labels differ)."""
    largest = 0.0
    for column in comp.schema.submission_columns()[1:]:
        a, b = first[column], second[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            largest = max(largest, float(np.max(np.abs(a.to_numpy(dtype=float) - b.to_numpy(dtype=float)))))
        elif (a.astype(str).to_numpy() != b.astype(str).to_numpy()).any():
            return float("inf")
    return largest
