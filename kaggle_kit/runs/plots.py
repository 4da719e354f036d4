"""PNG plots a competitor would rather look at than read: learning curves and predicted vs true.

Each plot is built by a `*_figure` function; the run folder gets PNG files, `kit report` embeds the same figures.
"""

from __future__ import annotations

import io
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


def png_bytes(fig, dpi: int = 90) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def learning_curves(metrics: pd.DataFrame, metric_name: str, path: Path) -> None:
    _save(learning_curves_figure(metrics, metric_name), path)


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray, targets, path: Path) -> None:
    _save(predicted_vs_true_figure(y_true, y_pred, targets), path)


def learning_curves_figure(metrics: pd.DataFrame, metric_name: str):
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
    return fig


def predicted_vs_true_figure(y_true: np.ndarray, y_pred: np.ndarray, targets):
    """One panel per target: predicted against true score, with a little jitter so discrete label levels stay
    readable; for a classification target the confusion matrix of the most probable class."""
    from kaggle_kit.tasks.metrics import predicted_labels
    from kaggle_kit.tasks.targets import as_targets, output_slices

    targets = as_targets(targets)
    n = len(targets)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)
    for k, (target, columns) in enumerate(zip(targets, output_slices(targets), strict=True)):
        ax = axes[k // cols][k % cols]
        pred = y_pred[:, columns] if target.width > 1 else y_pred[:, columns.start]
        if target.kind != "regression":
            _confusion(ax, y_true[:, k].astype(np.int64), predicted_labels(pred, target).astype(np.int64), target)
            continue
        t = y_true[:, k] + rng.uniform(-0.06, 0.06, len(y_true)) * (np.ptp(y_true[:, k]) or 1) / 4
        ax.scatter(t, pred, s=6, alpha=0.35)
        low = min(y_true[:, k].min(), pred.min())
        high = max(y_true[:, k].max(), pred.max())
        ax.plot([low, high], [low, high], "k--", lw=1)
        rmse = float(np.sqrt(np.mean((y_true[:, k] - pred) ** 2)))
        ax.set_title(f"{target.name} (RMSE {rmse:.3f})")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    return fig


def cv_figure(rows: list[str], columns: dict[str, dict[str, float]], baseline: dict[str, float] | None,
              metric_name: str):
    """Grouped bars: one group per target (and overall), one bar per fold and for the pooled OOF score;
    the train-mean baseline as a black tick, so a bar above (or below) it reads at once."""
    fig, ax = plt.subplots(figsize=(min(11.0, max(5.0, 0.9 * len(rows) + 3)), 3.6), layout="constrained")
    width = 0.8 / max(1, len(columns))
    x = np.arange(len(rows))
    colors = plt.get_cmap("tab10")
    for i, (label, values) in enumerate(columns.items()):
        heights = [values.get(r, np.nan) for r in rows]
        color = "black" if label == "OOF" else colors(i % 10)
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=label, color=color,
               alpha=0.9 if label == "OOF" else 0.75)
    if baseline:
        ax.scatter(x, [baseline.get(r, np.nan) for r in rows], marker="_", s=900, color="crimson", zorder=3,
                   label="train-mean baseline")
    ax.set_xticks(x, rows, rotation=20 if len(rows) > 4 else 0)
    ax.set_ylabel(metric_name)
    values = [v for c in columns.values() for v in c.values()] + list((baseline or {}).values())
    finite = [v for v in values if np.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        pad = (high - low) * 0.15 or abs(high) * 0.05 or 0.05
        ax.set_ylim(min(0.0, low - pad) if low < 0 else max(0.0, low - pad), high + pad)
    ax.legend(fontsize=8, ncol=min(6, len(columns) + 1), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def residuals_by_length_figure(lengths: np.ndarray, residuals: np.ndarray, names: list[str], max_len: int | None,
                               bins: int = 8):
    """Left: each row's mean residual (predicted - true) against its length in tokens. Right: RMSE per target
    in length bins of equal count. A dashed line marks max_len: beyond it the model saw a truncated input."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    mean_residual = residuals.mean(axis=1)
    left.scatter(lengths, mean_residual, s=6, alpha=0.35)
    left.axhline(0, color="black", lw=1)
    left.set_xlabel("input length (tokens, untruncated)")
    left.set_ylabel("residual (predicted - true)" + (", mean of targets" if len(names) > 1 else ""))
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([lengths.min(), lengths.max() + 1])
    which = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, len(edges) - 2)
    centers = [(edges[b] + edges[b + 1]) / 2 for b in range(len(edges) - 1)]
    for k, name in enumerate(names):
        rmse = [np.sqrt(np.mean(residuals[which == b, k] ** 2)) if np.any(which == b) else np.nan
                for b in range(len(edges) - 1)]
        right.plot(centers, rmse, "o-", label=name, ms=4)
    right.set_xlabel("input length (tokens), bins of equal count")
    right.set_ylabel("RMSE in bin")
    for ax in (left, right):
        if max_len and lengths.max() > max_len:
            ax.axvline(max_len, color="crimson", ls="--", lw=1, label=f"max_len {max_len}" if ax is right else None)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def ensemble_figure(members: list[str], weights: np.ndarray, member_scores: np.ndarray, blend_scores: np.ndarray,
                    targets: list[str], metric_name: str):
    """Left: each target's weights, stacked by member. Right: each member's OOF score per target and the blend's."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    x = np.arange(len(targets))
    bottom = np.zeros(len(targets))
    colors = plt.get_cmap("tab10")
    for r, name in enumerate(members):
        left.bar(x, weights[r], 0.6, bottom=bottom, label=name, color=colors(r % 10))
        bottom += weights[r]
    left.set_xticks(x, targets, rotation=20 if len(targets) > 4 else 0)
    left.set_ylabel("weight")
    left.set_ylim(0, 1.05)
    left.set_title("weights per target")
    width = 0.8 / (len(members) + 1)
    for r, name in enumerate(members):
        right.bar(x - 0.4 + width * (r + 0.5), member_scores[r], width, label=name, color=colors(r % 10), alpha=0.75)
    right.bar(x - 0.4 + width * (len(members) + 0.5), blend_scores, width, label="blend", color="black")
    right.set_xticks(x, targets, rotation=20 if len(targets) > 4 else 0)
    right.set_ylabel(f"OOF {metric_name}")
    right.set_title("members and blend")
    finite = [v for v in [*member_scores.ravel(), *blend_scores] if np.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        pad = (high - low) * 0.2 or 0.05
        right.set_ylim(low - pad, high + pad)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _confusion(ax, truth: np.ndarray, labels: np.ndarray, target) -> None:
    """Rows: true class, columns: predicted class, each cell the share of its row."""
    size = len(target.classes)
    counts = np.bincount(truth * size + labels, minlength=size * size).reshape(size, size)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    names = [str(c) for c in target.classes]
    ax.set_xticks(range(size), names, rotation=45, ha="right")
    ax.set_yticks(range(size), names)
    for i in range(size):
        for j in range(size):
            ax.text(j, i, f"{counts[i, j]}", ha="center", va="center", fontsize=8)
    ax.set_title(f"{target.name} (accuracy {np.mean(truth == labels):.3f})")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")


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
