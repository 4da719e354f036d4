"""Ensemble weights for several runs, fitted on their out-of-fold predictions.

The weights are non-negative and sum to 1, so a blend stays on the scale of its members (this matters for
MCRMSE; Pearson would not care) and a blend of probabilities stays a probability. The fit is a small constrained
optimisation over the simplex; the equal blend and every single run are also tried, so the fitted blend never
scores worse on the OOF rows than its best member.

A plugin's fitted post-processor (QWK thresholds, temperature) is not blended: the runs' predictions before it
are blended, and it is fitted again on the blended OOF predictions (`blended_postprocess`), as top solutions
do; each run's own state was fitted to that run's errors, not to the blend's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.competition import Competition, PostProcess, identity
from kaggle_kit.data.load import load_train, resolve_data_dir
from kaggle_kit.errors import KitError
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.tasks.metrics import Metric
from kaggle_kit.tasks.postprocess import fit_record
from kaggle_kit.tasks.targets import output_weights

log = logging.getLogger(__name__)


def blend(preds: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    return sum(w * np.asarray(p, dtype=np.float64) for w, p in zip(weights, preds, strict=True))


def _score(preds, weights, y_true, metric: Metric, names, postprocess: PostProcess) -> float:
    return metric(y_true, postprocess(blend(preds, weights)), names).score


def fit_weights(oof_preds: Sequence[np.ndarray], y_true: np.ndarray, metric: Metric, names: Sequence[str],
                postprocess: PostProcess = identity) -> np.ndarray:
    """Non-negative weights summing to 1 that optimise `metric` of the blended OOF predictions.

    SLSQP handles the simplex constraint directly (a softmax parametrisation never reaches an exact 0, and a run
    that only adds noise should get exactly 0). The metric is not convex in general, so the optimiser's answer is
    compared against the equal blend and each run alone, and the best of them is kept.
    """
    from scipy.optimize import minimize

    n = len(oof_preds)
    if n == 0:
        raise KitError("no runs to ensemble")
    if n == 1:
        return np.ones(1)
    sign = -1.0 if metric.greater_is_better else 1.0

    def objective(w: np.ndarray) -> float:
        return sign * _score(oof_preds, w, y_true, metric, names, postprocess)

    candidates = [np.full(n, 1.0 / n), *np.eye(n)]
    result = minimize(objective, candidates[0], method="SLSQP", bounds=[(0.0, 1.0)] * n,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
                      options={"ftol": 1e-10, "maxiter": 200})
    if np.all(np.isfinite(result.x)):
        fitted = np.clip(result.x, 0.0, None)
        if fitted.sum() > 0:
            candidates.append(fitted / fitted.sum())
    best = min(candidates, key=objective)
    best = np.where(best < 1e-6, 0.0, best)
    return best / best.sum()


@dataclass
class EnsembleReport:
    """Weights with the OOF score of each run alone and of the blend, on the rows every run predicted."""

    runs: list[str]
    weights: np.ndarray
    run_scores: list[float]
    blend_score: float
    n_rows: int
    fitted: bool
    metric: str
    # The plugin's post-processor fitted on the blended OOF predictions ({"name", "state", "n_rows"}), and the
    # blend's score after it (on the same rows).
    postprocess: dict | None = None
    blend_score_after: float | None = None

    def table(self) -> str:
        width = max(len(r) for r in [*self.runs, "blend"])
        lines = [f"{'run'.ljust(width)}  weight  OOF {self.metric}"]
        lines += [f"{r.ljust(width)}  {w:6.3f}  {s:.4f}" for r, w, s in zip(self.runs, self.weights, self.run_scores,
                                                                          strict=True)]
        lines.append(f"{'blend'.ljust(width)}  {'fitted' if self.fitted else 'given':>6}  {self.blend_score:.4f}")
        if self.postprocess is not None:
            lines.append(f"{'blend + ' + self.postprocess['name']}  (fitted on the blended OOF)  "
                         f"{self.blend_score_after:.4f}")
        return "\n".join(lines) + f"\n({self.n_rows} OOF rows predicted by every run)"


def aligned_oof(comp: Competition, run_dirs: Sequence[Path], train_df: pd.DataFrame
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Truth and each run's OOF predictions on the rows every run predicted, in train.csv order.

    Runs may cover different rows (a quick run trains one fold of four, runs may use other seeds or folds),
    so rows are matched on the id column and only the intersection is scored.
    """
    id_col = comp.schema.id_column
    targets = comp.schema.target_names
    columns = comp.schema.output_columns
    train_ids = train_df[id_col].astype(str)
    common = set(train_ids)
    frames = []
    for path in run_dirs:
        run = RunDir(Path(path))
        if not run.oof.is_file():
            raise KitError(f"{run.path}: no {run.oof.name}; train the run to the end (or `kit train --resume`) first")
        oof = pd.read_csv(run.oof, dtype={id_col: str})
        missing = [c for c in (id_col, *columns) if c not in oof.columns]
        if missing:
            raise KitError(f"{run.oof}: missing column(s) {', '.join(missing)}; is it a {comp.name} run?")
        unknown = set(oof[id_col]) - set(train_ids)
        if unknown:
            raise KitError(f"{run.oof}: {len(unknown)} id(s) not in train.csv, e.g. {sorted(unknown)[0]!r}; "
                           f"was the run trained on other data?")
        frames.append(oof.set_index(id_col))
        common &= set(oof[id_col])
    if not common:
        raise KitError(f"the runs share no OOF rows ({', '.join(Path(p).name for p in run_dirs)}): each predicted "
                       f"different folds; train a common fold (e.g. --train-folds 0 with the same --folds and --seed)")
    rows = train_ids[train_ids.isin(common)]
    y_true = train_df.loc[rows.index, targets].to_numpy(dtype=np.float64)
    preds = [f.loc[rows.to_numpy(), columns].to_numpy(dtype=np.float64) for f in frames]
    return y_true, preds


def ensemble_report(comp: Competition, run_dirs: Sequence[Path], weights: Sequence[float] | None = None,
                    data_dir: Path | None = None) -> EnsembleReport:
    """Fit weights on the runs' OOF predictions (or score the given ones) and report every score.

    The labels come from train.csv in `data_dir`, by default the first run's data folder.
    """
    if not run_dirs:
        raise KitError("no runs to ensemble")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if len(weights) != len(run_dirs):
            raise KitError(f"{len(weights)} ensemble weights for {len(run_dirs)} runs")
        if np.any(weights < 0) or weights.sum() <= 0:
            raise KitError(f"ensemble weights must be non-negative with a positive sum (got {weights.tolist()})")
        weights = weights / weights.sum()
    folder = resolve_data_dir(comp, data_dir or RunDir(Path(run_dirs[0])).data_dir())
    y_true, preds = aligned_oof(comp, run_dirs, load_train(comp, folder))
    names = comp.schema.targets
    fitted = weights is None
    if fitted:
        weights = fit_weights(preds, y_true, comp.metric, names, comp.postprocess)
    run_scores = [comp.metric(y_true, comp.postprocess(p), names).score for p in preds]
    report = EnsembleReport(runs=[Path(p).name for p in run_dirs], weights=weights, run_scores=run_scores,
                            blend_score=_score(preds, weights, y_true, comp.metric, names, comp.postprocess),
                            n_rows=len(y_true), fitted=fitted, metric=comp.metric.name)
    if comp.postprocessor is not None:
        blended = comp.postprocess(blend(preds, weights))
        report.postprocess = fit_record(comp.postprocessor, blended, y_true, names)
        after = comp.postprocessor.apply(blended, report.postprocess["state"], names)
        report.blend_score_after = comp.metric(y_true, after, names).score
    log.info("ensemble on %d OOF rows:\n%s", report.n_rows, report.table())
    return report


def blended_postprocess(comp: Competition, run_dirs: Sequence[Path], weights: Sequence,
                        data_dir: Path | None = None) -> dict:
    """The plugin's post-processor fitted on the runs' OOF predictions blended with `weights` (one per run, or per
    target: what predicting several runs applies); it needs the training labels, so the first run's train.csv by
    default."""
    try:
        folder = resolve_data_dir(comp, data_dir or RunDir(Path(run_dirs[0])).load_config().data)
        y_true, preds = aligned_oof(comp, run_dirs, load_train(comp, folder))
    except KitError as err:
        raise KitError(f"several runs: {comp.name}'s {comp.postprocessor.name} is fitted on their blended OOF "
                       f"predictions, which needs their oof.csv and train.csv ({err})") from None
    columns = np.array([output_weights(w, comp.schema.targets) for w in weights])
    blended = comp.postprocess(blend(preds, list(columns / columns.sum(axis=0))))
    return fit_record(comp.postprocessor, blended, y_true, comp.schema.targets)
