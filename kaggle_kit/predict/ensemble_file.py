"""`kit ensemble`: hill-climbed, per-target blend weights fitted on the runs' OOF, saved as one JSON file that
`kit predict --ensemble FILE`, `kit bundle --ensemble FILE` and `kit report --ensemble FILE` take.

The file names the runs by path, the folds each run predicts with, the weights (one list per target, or one list
for every target under "*"), and the fit's OOF scores: each run's, the blend's on all rows, and the blend's
held-out estimate (see predict/hill_climb.py for why that is the number to trust).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kaggle_kit.competition import Competition
from kaggle_kit.data.load import load_train, resolve_data_dir
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json, write_json
from kaggle_kit.predict.ensemble import aligned_oof
from kaggle_kit.predict.hill_climb import FittedBlend, fit_blend
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.tasks.postprocess import fit_record
from kaggle_kit.tasks.targets import Target, output_slices, output_weights

log = logging.getLogger(__name__)

ENSEMBLE_FORMAT = 1
ALL_TARGETS = "*"


def expand_runs(runs: Sequence[Path], patterns: Sequence[str]) -> list[Path]:
    """--run folders plus --runs glob patterns, de-duplicated in order; only finished runs (they have oof.csv)."""
    found: list[Path] = [Path(r) for r in runs]
    for pattern in patterns:
        matches = sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "run_config.json").is_file())
        if not matches:
            raise KitError(f"--runs {pattern!r}: matches no run folder")
        found += [m for m in matches if (m / "oof.csv").is_file()]
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if len(unique) < 2:
        raise KitError(f"an ensemble needs at least 2 finished runs (got {len(unique)})")
    return unique


def member_folds(comp: Competition, run: RunDir) -> list[int]:
    """A member's finished folds, checked: a run of another competition is named as that before anything else."""
    competition = run.load_config().competition
    if competition != comp.name:
        raise KitError(f"--run {run.path}: a run of {competition!r}, not of {comp.name!r}")
    return run.select_folds()


def per_target_metric(comp: Competition) -> bool:
    """Per-target weights where the competition's score is a mean of per-target scores and there are several."""
    return len(comp.schema.target_names) > 1 and comp.metric.combine == "mean"


@dataclass
class EnsembleFit:
    data: dict[str, Any]  # what the ensemble file holds
    curves: dict[str, FittedBlend]  # per weight key, for the climb plot
    single_best: dict[str, float]


def fit_ensemble(comp: Competition, run_dirs: Sequence[Path], data_dir: Path | None = None, max_steps: int = 30,
                 chunks: int = 5, seed: int = 42) -> EnsembleFit:
    """Hill-climbed weights on the runs' OOF rows; every run checked first (its competition, then each finished
    fold's weight file against its record: an ensemble file names folds that `kit predict` and `kit bundle` use)."""
    run_folds = [member_folds(comp, RunDir(Path(r))) for r in run_dirs]
    names = comp.schema.target_names
    targets = comp.schema.targets
    folder = resolve_data_dir(comp, data_dir or RunDir(Path(run_dirs[0])).load_config().data)
    y, preds = aligned_oof(comp, run_dirs, load_train(comp, folder))
    chunk_of_row = np.random.default_rng(seed).permutation(len(y)) % chunks
    post = comp.postprocess
    slices = output_slices(targets)

    def outputs(indices: list[int]) -> list[int]:
        """The prediction columns of these targets (K per multiclass target)."""
        return [c for i in indices for c in range(slices[i].start, slices[i].stop)]

    def scorer(indices: list[int]):
        return lambda truth, pred: comp.metric(truth, post(pred), [targets[i] for i in indices]).score

    groups = {name: [i] for i, name in enumerate(names)} if per_target_metric(comp) else {ALL_TARGETS: list(
        range(len(names)))}
    weights, curves, single_best = {}, {}, {}
    for key, indices in groups.items():
        columns = outputs(indices)
        fitted = fit_blend([p[:, columns] for p in preds], y[:, indices], scorer(indices),
                           comp.metric.greater_is_better, chunk_of_row, max_steps)
        weights[key] = [round(float(w), 6) for w in fitted.weights]
        curves[key] = fitted
        single = [scorer(indices)(y[:, indices], p[:, columns]) for p in preds]
        single_best[key] = max(single) if comp.metric.greater_is_better else min(single)
    blend = blend_predictions(preds, weights, names, targets)
    run_scores = {RunDir(Path(r)).path.name: comp.metric(y, post(p), targets) for r, p in zip(run_dirs, preds,
                                                                                            strict=True)}
    blend_result = comp.metric(y, post(blend), targets)
    held_out = float(np.mean([c.held_out_score for c in curves.values()])) if per_target_metric(comp) else \
        curves[ALL_TARGETS].held_out_score
    data = {
        "ensemble_format": ENSEMBLE_FORMAT,
        "competition": comp.name,
        "metric": comp.metric.name,
        "greater_is_better": comp.metric.greater_is_better,
        "runs": [{"path": str(Path(r)), "name": Path(r).name, "folds": folds}
                 for r, folds in zip(run_dirs, run_folds, strict=True)],
        "weights": weights,
        "fit": {"method": "hill climbing with replacement, step count chosen on held-out OOF chunks",
                "max_steps": max_steps, "chunks": chunks, "seed": seed, "n_oof_rows": len(y),
                "steps": {k: c.steps for k, c in curves.items()}},
        "oof": {"blend": blend_result.score, "blend_per_target": blend_result.per_target,
                "blend_held_out_estimate": held_out,
                "runs": {name: {"score": r.score, "per_target": r.per_target} for name, r in run_scores.items()}},
    }
    if comp.postprocessor is not None:  # refitted on the blend, as `kit predict --ensemble` does
        record = fit_record(comp.postprocessor, post(blend), y, targets)
        after = comp.metric(y, comp.postprocessor.apply(post(blend), record["state"], targets), targets)
        data["postprocess"] = {**record, "blend_after": after.score}
    return EnsembleFit(data, curves, single_best)


def blend_predictions(preds: Sequence[np.ndarray], weights: dict[str, list[float]], names: Sequence[str],
                      targets: Sequence[Target] | None = None) -> np.ndarray:
    """The runs' predictions blended with per-target weights (a K-class target's columns share its weight)."""
    matrix = weight_matrix(weights, names, len(preds))
    targets = targets if targets is not None else [Target(n) for n in names]
    return sum(output_weights(matrix[i], targets) * np.asarray(p, dtype=np.float64) for i, p in enumerate(preds))


def weight_matrix(weights: dict[str, list[float]], names: Sequence[str], n_runs: int) -> np.ndarray:
    """(runs, targets) weights from an ensemble file's per-target (or "*") lists."""
    matrix = np.zeros((n_runs, len(names)))
    for j, name in enumerate(names):
        column = weights.get(name, weights.get(ALL_TARGETS))
        if column is None or len(column) != n_runs:
            raise KitError(f"ensemble weights for {name!r}: expected {n_runs} numbers")
        matrix[:, j] = column
    return matrix


def read_ensemble_file(path: Path) -> dict[str, Any]:
    """An ensemble file's content, checked for the shape `kit ensemble` writes (one line when it is not)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"--ensemble {path}: file not found (make one with `kit ensemble`)")
    try:
        data = read_json(path)
    except ValueError as err:
        raise KitError(f"--ensemble {path}: not valid JSON ({err})") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if (not isinstance(runs, list) or not runs or not isinstance(data.get("weights"), dict)
            or not all(isinstance(r, dict) and isinstance(r.get("path"), str) for r in runs)):
        raise KitError(f"--ensemble {path}: not an ensemble file (expected \"runs\": [{{\"path\": ...}}, ...] and "
                       f"\"weights\"; `kit ensemble` writes one)")
    return data


def load_ensemble(path: Path, comp: Competition) -> tuple[list[Path], np.ndarray, list[list[int]]]:
    """Runs, (runs, targets) weights and each run's folds from an ensemble file, checked."""
    data = read_ensemble_file(path)
    if data.get("competition") != comp.name:
        raise KitError(f"--ensemble {path}: an ensemble of {data.get('competition')!r}, not of {comp.name!r}")
    runs = [Path(r["path"]) for r in data["runs"]]
    for run in runs:
        if not (run / "run_config.json").is_file():
            raise KitError(f"--ensemble {path}: run {run} is not there (the file names runs by path)")
    folds = [r.get("folds") or RunDir(run).finished_folds() for r, run in zip(data["runs"], runs, strict=True)]
    return runs, weight_matrix(data["weights"], comp.schema.target_names, len(runs)), folds


def write_ensemble(fit: EnsembleFit, out: Path) -> None:
    write_json(out, fit.data)
    from kaggle_kit.runs.plots import climb_plot

    climb_plot(fit.curves, fit.single_best, fit.data["metric"], out.with_suffix(".png"))


def runs_table(data: dict[str, Any], names: Sequence[str]) -> list[list[str]]:
    """Rows for the console, one per run: its OOF score, mean weight, and weight per target (in target order)."""
    weights = data["weights"]
    rows = []
    for i, run in enumerate(data["runs"]):
        per_target = [weights.get(n, weights.get(ALL_TARGETS))[i] for n in names]
        shown = " ".join(f"{w:.2f}" for w in per_target) if ALL_TARGETS not in weights else f"{per_target[0]:.2f}"
        rows.append([run["name"][:28], f"{data['oof']['runs'][run['name']]['score']:.4f}",
                     f"{np.mean(per_target):.2f}", shown])
    return rows


def targets_table(data: dict[str, Any], names: Sequence[str]) -> list[list[str]]:
    """Rows for the console, one per target and overall: the best single run's OOF and the blend's."""
    runs = data["oof"]["runs"].values()
    better = max if data["greater_is_better"] else min
    rows = [[n, f"{better(r['per_target'][n] for r in runs):.4f}", f"{data['oof']['blend_per_target'][n]:.4f}"]
            for n in names]
    rows.append(["overall", f"{better(r['score'] for r in runs):.4f}", f"{data['oof']['blend']:.4f}"])
    return rows
