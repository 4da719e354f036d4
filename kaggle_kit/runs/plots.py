"""PNG plots a competitor would rather look at than read: learning curves, and the out-of-fold predictions drawn
the way the target's kind is judged.

Each plot is built by a `*_figure` function; the run folder gets PNG files (`write_run_plots`), `kit report` embeds
the same figures. Which plots a run gets depends on its targets' kinds (kaggle_kit.tasks.targets):
- regression: predicted against true (RMSE in the title);
- binary: ROC curve (AUC), precision-recall curve (average precision) of the positive class's probability, a
  reliability diagram (ECE in the title) and the confusion matrix at P >= 0.5;
- multiclass: one-vs-rest ROC and precision-recall curves per class (per-class and macro AUC / AP), a reliability
  diagram of the most probable class's probability (the confidence) and the confusion matrix of that class.
Curves and scores come from scikit-learn (roc_curve, roc_auc_score, precision_recall_curve,
average_precision_score, calibration_curve).
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


# Files in a run's plots/ folder, by the target kinds that get them.
LEARNING_CURVES = "learning_curves.png"
PREDICTED_VS_TRUE = "predicted_vs_true.png"  # regression targets
CONFUSION_MATRIX = "confusion_matrix.png"  # binary and multiclass targets
ROC_PR_CURVES = "roc_pr_curves.png"  # binary and multiclass targets
RELIABILITY = "reliability.png"  # binary and multiclass targets
CLASSIFICATION_KINDS = ("binary", "multiclass")
RELIABILITY_BINS = 10


def write_run_plots(folder: Path, metrics: pd.DataFrame, metric_name: str, y_true: np.ndarray, y_pred: np.ndarray,
                    targets) -> dict[str, dict]:
    """The plots of a finished run's pooled OOF predictions, each only for the target kinds it suits; returns the
    classification scores the curves show (`classification_scores`), for cv.json."""
    from kaggle_kit.tasks.targets import as_targets

    targets = as_targets(targets)
    learning_curves(metrics, metric_name, folder / LEARNING_CURVES)
    regression = columns_of(y_true, y_pred, targets, ("regression",))
    if regression[2]:
        _save(predicted_vs_true_figure(*regression), folder / PREDICTED_VS_TRUE)
    classification = columns_of(y_true, y_pred, targets, CLASSIFICATION_KINDS)
    if not classification[2]:
        return {}
    scores = classification_scores(*classification)
    _save(confusion_figure(*classification), folder / CONFUSION_MATRIX)
    _save(roc_pr_figure(*classification, scores), folder / ROC_PR_CURVES)
    _save(reliability_figure(*classification, scores), folder / RELIABILITY)
    return scores


def columns_of(y_true: np.ndarray, y_pred: np.ndarray, targets, kinds: tuple[str, ...]):
    """The labels, prediction columns and targets of the targets of `kinds` only."""
    from kaggle_kit.tasks.targets import output_slices

    keep = [k for k, t in enumerate(targets) if t.kind in kinds]
    slices = output_slices(targets)
    columns = [c for k in keep for c in range(slices[k].start, slices[k].stop)]
    return y_true[:, keep], y_pred[:, columns], [targets[k] for k in keep]


def _target_columns(y_true: np.ndarray, y_pred: np.ndarray, targets):
    """(target, its labels as class indices, its predictions: P(positive) for binary, (n, K) for multiclass)."""
    from kaggle_kit.tasks.targets import output_slices

    for k, (target, columns) in enumerate(zip(targets, output_slices(targets), strict=True)):
        pred = y_pred[:, columns] if target.kind == "multiclass" else y_pred[:, columns.start]
        yield target, y_true[:, k].astype(np.int64), pred


def reliability_bins(hit: np.ndarray, probability: np.ndarray, bins: int = RELIABILITY_BINS) -> dict[str, list]:
    """Binned calibration: probabilities cut into `bins` equal-width bins of [0, 1] (a probability on an edge falls
    in the lower bin, as scikit-learn's calibration_curve cuts them); per non-empty bin the mean predicted
    probability, the observed frequency of `hit` (0/1) and the row count; and the expected calibration error, the
    count-weighted mean of |observed - predicted|. Probabilities outside [0, 1] (a regression loss on a binary
    target) are clipped first."""
    from sklearn.calibration import calibration_curve

    probability = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
    hit = np.asarray(hit, dtype=np.int64)
    observed, predicted = calibration_curve(hit, probability, n_bins=bins, strategy="uniform")
    which = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], probability)
    counts = np.bincount(which, minlength=bins)
    lower = np.flatnonzero(counts) / bins
    counts = counts[counts > 0]
    ece = float(np.sum(counts / counts.sum() * np.abs(observed - predicted)))
    return {"bin_low": lower.round(6).tolist(), "predicted": predicted.tolist(), "observed": observed.tolist(),
            "count": counts.tolist(), "ece": ece}


def _curve_scores(hit: np.ndarray, score: np.ndarray) -> dict[str, float | None]:
    """ROC AUC and average precision of `score` for the 0/1 `hit`; None where one of the two is absent."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if hit.min() == hit.max():
        return {"auc": None, "average_precision": None}
    return {"auc": float(roc_auc_score(hit, score)), "average_precision": float(average_precision_score(hit, score))}


def _macro(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, targets) -> dict[str, dict]:
    """Per binary or multiclass target: ROC AUC and average precision (a multiclass target's one-vs-rest per class
    and their unweighted mean, macro, over the classes present) and the reliability bins with their ECE (of P(positive)
    for binary, of the top class's probability for multiclass)."""
    out: dict[str, dict] = {}
    for target, labels, pred in _target_columns(y_true, y_pred, targets):
        if target.kind == "binary":
            out[target.name] = {"kind": "binary", "positive_class": str(target.classes[1]),
                                **_curve_scores(labels, pred), "reliability": reliability_bins(labels, pred)}
            continue
        per_class = {str(c): _curve_scores((labels == i).astype(np.int64), pred[:, i])
                     for i, c in enumerate(target.classes)}
        top = np.argmax(pred, axis=1)
        out[target.name] = {"kind": "multiclass", "per_class": per_class,
                            "auc_macro": _macro([v["auc"] for v in per_class.values()]),
                            "average_precision_macro": _macro([v["average_precision"] for v in per_class.values()]),
                            "reliability": reliability_bins((top == labels).astype(np.int64), pred.max(axis=1))}
    return out


def format_score(value: float | None) -> str:
    """A classification score for a title or a log line: "n/a" where a class is absent from the labels."""
    return "n/a" if value is None else f"{value:.4f}"


def scores_line(name: str, record: dict) -> str:
    """One target's `classification_scores` in a line, as kit train logs it."""
    macro = "_macro" if record["kind"] == "multiclass" else ""
    return (f"{name}: ROC AUC{' (macro)' if macro else ''} {format_score(record['auc' + macro])}, average precision "
            f"{format_score(record['average_precision' + macro])}, ECE {record['reliability']['ece']:.4f}")


def roc_pr_figure(y_true: np.ndarray, y_pred: np.ndarray, targets, scores: dict[str, dict] | None = None):
    """One row per binary or multiclass target: its ROC curve (left) and precision-recall curve (right); a
    multiclass target has one curve per class, one-vs-rest. Dotted: chance (the diagonal; the positive rate)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    scores = scores or classification_scores(y_true, y_pred, targets)
    fig, axes = plt.subplots(len(targets), 2, figsize=(10, 4.2 * len(targets)), squeeze=False, layout="constrained")
    colors = plt.get_cmap("tab10")
    for (roc_ax, pr_ax), (target, labels, pred) in zip(axes, _target_columns(y_true, y_pred, targets),
                                                        strict=True):
        record = scores[target.name]
        if target.kind == "binary":
            curves = [(str(target.classes[1]), (labels == 1).astype(np.int64), pred, record)]
            title = f"AUC {format_score(record['auc'])}", f"AP {format_score(record['average_precision'])}"
        else:
            curves = [(str(c), (labels == i).astype(np.int64), pred[:, i], record["per_class"][str(c)])
                      for i, c in enumerate(target.classes)]
            title = (f"macro AUC {format_score(record['auc_macro'])}",
                     f"macro AP {format_score(record['average_precision_macro'])}")
        for i, (name, hit, score, values) in enumerate(curves):
            if values["auc"] is None:
                continue
            fpr, tpr, _ = roc_curve(hit, score)
            roc_ax.plot(fpr, tpr, color=colors(i % 10), label=f"{name} (AUC {values['auc']:.3f})")
            precision, recall, _ = precision_recall_curve(hit, score)
            pr_ax.step(recall, precision, where="post", color=colors(i % 10),
                       label=f"{name} (AP {values['average_precision']:.3f})")
            pr_ax.axhline(hit.mean(), color=colors(i % 10), ls=":", lw=1)
        roc_ax.plot([0, 1], [0, 1], "k:", lw=1)
        roc_ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
                   title=f"{target.name}: ROC, {title[0]}")
        pr_ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
                  title=f"{target.name}: precision-recall, {title[1]}")
        for ax in (roc_ax, pr_ax):
            ax.legend(fontsize=8, loc="lower right" if ax is roc_ax else "upper right")
    return fig


def reliability_figure(y_true: np.ndarray, y_pred: np.ndarray, targets, scores: dict[str, dict] | None = None):
    """Per binary or multiclass target: observed frequency against mean predicted probability in equal-width bins
    (dashed: perfectly calibrated), each point labelled with its row count, and the counts as bars below."""
    scores = scores or classification_scores(y_true, y_pred, targets)
    fig = plt.figure(figsize=(4.6 * len(targets), 5.2), layout="constrained")
    grid = fig.add_gridspec(2, len(targets), height_ratios=(3, 1))
    for k, target in enumerate(targets):
        bins = scores[target.name]["reliability"]
        curve, counts = fig.add_subplot(grid[0, k]), fig.add_subplot(grid[1, k])
        curve.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
        curve.plot(bins["predicted"], bins["observed"], "o-", color="tab:blue", label="this run (OOF)")
        for x, y, n in zip(bins["predicted"], bins["observed"], bins["count"], strict=True):
            curve.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        what = "P(" + str(target.classes[1]) + ")" if target.kind == "binary" else "top-class probability"
        hit = "positive" if target.kind == "binary" else "top class correct"
        curve.set(xlim=(0, 1), ylim=(0, 1.02), ylabel=f"observed frequency ({hit})",
                  title=f"{target.name}: ECE {bins['ece']:.3f}")
        curve.legend(fontsize=8, loc="upper left")
        width = 1.0 / RELIABILITY_BINS
        counts.bar(np.asarray(bins["bin_low"]) + width / 2, bins["count"], width * 0.9, color="tab:blue", alpha=0.5)
        counts.set(xlim=(0, 1), xlabel=f"mean predicted {what}", ylabel="rows")
    return fig


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, targets):
    """One confusion matrix per binary or multiclass target (the most probable class; P >= 0.5 for binary)."""
    from kaggle_kit.tasks.metrics import predicted_labels

    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 4), squeeze=False, layout="constrained")
    for ax, (target, labels, pred) in zip(axes[0], _target_columns(y_true, y_pred, targets), strict=True):
        _confusion(ax, labels, predicted_labels(pred, target).astype(np.int64), target)
    return fig


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
    readable; for a classification target (in an ensemble report) the confusion matrix of the most probable
    class. A run's plots draw regression targets only here (`write_run_plots`)."""
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
