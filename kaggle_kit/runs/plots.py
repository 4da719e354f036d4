"""PNG plots a competitor would rather look at than read: learning curves and predicted vs true."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kaggle_kit.fileio import atomic_path  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def learning_curves(metrics: pd.DataFrame, metric_name: str, path: Path) -> None:
    """Per fold: smoothed training loss against step, validation score on a second axis."""
    folds = sorted(metrics["fold"].unique())
    fig, axes = plt.subplots(1, len(folds), figsize=(5 * len(folds), 3.6), squeeze=False, layout="constrained")
    for ax, fold in zip(axes[0], folds, strict=False):
        part = metrics[metrics["fold"] == fold]
        train = part.dropna(subset=["train_loss"])
        ax.plot(train["step"], train["train_loss"], alpha=0.3, color="tab:blue", label="train loss")
        ax.plot(train["step"], train["train_loss"].ewm(alpha=0.1).mean(), color="tab:blue", label="train loss (EMA)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("train loss")
        ax.set_title(f"fold {fold}")
        val = part.dropna(subset=["val_score"])
        if len(val):
            ax2 = ax.twinx()
            ax2.plot(val["step"], val["val_score"], "o-", color="tab:red", label=f"val {metric_name}")
            ax2.set_ylabel(f"val {metric_name}", color="tab:red")
        ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], path: Path) -> None:
    """One panel per target; a little jitter so discrete label levels stay readable."""
    n = len(names)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        t = y_true[:, k] + rng.uniform(-0.06, 0.06, len(y_true)) * (np.ptp(y_true[:, k]) or 1) / 4
        ax.scatter(t, y_pred[:, k], s=6, alpha=0.35)
        low = min(y_true[:, k].min(), y_pred[:, k].min())
        high = max(y_true[:, k].max(), y_pred[:, k].max())
        ax.plot([low, high], [low, high], "k--", lw=1)
        rmse = float(np.sqrt(np.mean((y_true[:, k] - y_pred[:, k]) ** 2)))
        ax.set_title(f"{name} (RMSE {rmse:.3f})")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    _save(fig, path)


def climb_plot(curves: dict, single_best: dict[str, float], metric_name: str, path: Path) -> None:
    """Per weight group (a target, or all): the blend's OOF score after each hill-climbing step on all rows and
    held out, the chosen step, and the best single run."""
    keys = list(curves)
    cols = min(len(keys), 3)
    rows = int(np.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    for k, key in enumerate(keys):
        ax = axes[k // cols][k % cols]
        fitted = curves[key]
        steps = np.arange(1, len(fitted.all_rows_curve) + 1)
        ax.plot(steps, fitted.all_rows_curve, label="blend, all OOF rows")
        ax.plot(steps, fitted.held_out_curve, label="blend, held out")
        ax.axhline(single_best[key], color="grey", ls=":", label="best single run")
        ax.axvline(fitted.steps, color="tab:red", ls="--", lw=1, label=f"chosen: {fitted.steps} steps")
        ax.set_title("all targets" if key == "*" else key)
        ax.set_xlabel("hill-climbing step")
        ax.set_ylabel(f"OOF {metric_name}")
    for k in range(len(keys), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    _save(fig, path)
