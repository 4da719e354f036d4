"""`kit report`: one self-contained HTML file per run or ensemble, to read, keep and share.

Plots are PNGs embedded as base64 data URIs, the styles are inline, there is no script and no URL outside the
file: the page opens offline, from an e-mail attachment or a Kaggle dataset. A run that is still training (or
died) is reported from its finished folds. Labels come from the run's train.csv (or --data); without them the
plots that need labels are left out with a line saying why.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kaggle_kit import __version__
from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json, sha256_file
from kaggle_kit.runs import plots
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.views.listing import RunSummary, format_commit, format_cv, format_elapsed, format_value, summarize

log = logging.getLogger(__name__)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:24px 32px;background:#fff;min-height:100vh}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:28px 0 8px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}
.sub{color:#57606a;margin:0 0 16px}
.facts{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.fact{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;min-width:110px}
.fact b{display:block;font-size:1.25em}.fact span{color:#57606a;font-size:.85em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}td.text{text-align:left}
th.text{text-align:left}tr.total td{font-weight:bold;background:#f6f8fa}td.changed{font-weight:bold;background:#fff8c5}
figure{margin:8px 0}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#57606a;font-size:.85em}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:10px;overflow:auto;font-size:.8em;max-height:480px}
.note{color:#9a6700;background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:6px}
.status-complete{color:#1a7f37}.status-dead,.status-failed{color:#cf222e}.status-interrupted{color:#9a6700}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def figure_html(fig, alt: str, caption: str) -> str:
    data = base64.b64encode(plots.png_bytes(fig)).decode("ascii")
    return (f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]], total_last: bool = False,
               text_columns: Sequence[int] = ()) -> str:
    head = "".join(f'<th class="text">{esc(h)}</th>' if j in text_columns else f"<th>{esc(h)}</th>"
                   for j, h in enumerate(header))
    body = []
    for i, row in enumerate(rows):
        cls = ' class="total"' if total_last and i == len(rows) - 1 else ""
        cells = "".join(f'<td class="text">{esc(c)}</td>' if j in text_columns else f"<td>{esc(c)}</td>"
                        for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def fact(label: str, value: Any, css: str = "") -> str:
    return f'<div class="fact"><b class="{esc(css)}">{esc(value)}</b><span>{esc(label)}</span></div>'


def page(title: str, subtitle: str, sections: list[str]) -> str:
    made = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{STYLE}</style></head>'
            f'<body><main><h1>{esc(title)}</h1><p class="sub">{esc(subtitle)}</p>{"".join(sections)}'
            f'<p class="sub">kaggle-kit {esc(__version__)}, report written {esc(made)}</p></main></body></html>\n')


def _fmt(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4f}"


# --- data shared by the run and ensemble reports -------------------------------------------------------------

def competition_of(summary: RunSummary) -> Competition:
    from kaggle_kit.registry import get_competition

    if not summary.competition:
        raise KitError(f"{summary.path}: run_config.json names no competition")
    return get_competition(summary.competition)


@dataclass
class Labels:
    """train.csv of a run, when it can be found; `why` says what went wrong when not."""

    frame: pd.DataFrame | None
    folder: Path | None
    why: str | None = None
    warnings: list[str] = field(default_factory=list)


def load_labels(comp: Competition, summary: RunSummary, data_dir: Path | None) -> Labels:
    from kaggle_kit.data.load import load_train, resolve_data_dir

    recorded = summary.config.get("data")
    try:
        folder = resolve_data_dir(comp, data_dir or recorded)
        frame = load_train(comp, folder)
    except KitError as err:
        return Labels(None, None, f"labels not available ({err}); pass --data DIR with the run's train.csv")
    labels = Labels(frame, folder)
    trained_on = ((summary.manifest.get("data") or {}).get("train.csv") or {}).get("sha256")
    if trained_on and trained_on != sha256_file(folder / "train.csv"):
        labels.warnings.append(f"{folder / 'train.csv'} is not the file this run trained on "
                               f"(sha256 {sha256_file(folder / 'train.csv')[:12]}, run {trained_on[:12]})")
    return labels


def run_oof(comp: Competition, run: RunDir) -> pd.DataFrame | None:
    """oof.csv, or the finished folds' predictions of a run that has not pooled them yet."""
    id_col = comp.schema.id_column
    if run.oof.is_file():
        return pd.read_csv(run.oof, dtype={id_col: str})
    parts = [pd.read_csv(run.fold_oof(f), dtype={id_col: str}) for f in run.cv_folds()]
    return pd.concat(parts, ignore_index=True) if parts else None


def run_metrics(run: RunDir) -> pd.DataFrame | None:
    if run.metrics.is_file():
        return pd.read_csv(run.metrics)
    logs = sorted(run.path.glob("folds/fold*_metrics.csv"))
    frames = [pd.read_csv(p) for p in logs]
    return pd.concat(frames, ignore_index=True) if frames else None


def token_lengths(comp: Competition, run: RunDir, rows: pd.DataFrame, data_dir: Path | None) -> np.ndarray:
    """Untruncated input lengths in the run's own tokens, built exactly as training built them (format, seed, extra
    files, chat template): what max_len cut off is what matters."""
    from kaggle_kit.predict.inference import build_model_inputs, load_tokenizer, run_files

    cfg = run.load_config()
    tokenizer = load_tokenizer(run.tokenizer)
    files = run_files(comp, run, cfg, data_dir)
    ids = build_model_inputs(comp, rows, tokenizer, cfg.model_copy(update={"max_len": 10**7}), data_dir, files)
    return np.asarray([len(x) for x in ids])


# --- one run ------------------------------------------------------------------------------------------------

def run_report(run_path: Path, data_dir: Path | None = None) -> str:
    summary = summarize(run_path)
    run = RunDir(run_path)
    if not summary.config:
        raise KitError(f"{run_path}: not a kaggle-kit run folder (no readable run_config.json)")
    comp = competition_of(summary)
    targets = comp.schema.target_names
    scores = summary.scores
    metric = scores.metric or comp.metric.name
    sections: list[str] = []
    notes: list[str] = []
    if summary.status != "complete":
        notes.append(f"This run is {summary.status}: {summary.folds_done} of {summary.folds_planned} folds "
                     f"finished; the scores below are from the finished folds only.")

    facts = [fact(f"CV {metric}" + ("" if scores.pooled else " (mean of folds)"), format_cv(scores)),
             fact("status", summary.status, f"status-{summary.status}"),
             fact("folds done", summary.folds), fact("model", summary.model or "-"),
             fact("max_len", format_value(summary.max_len)), fact("elapsed", format_elapsed(summary.elapsed)),
             fact("commit", format_commit(summary.commit))]
    if scores.baseline is not None:
        facts.insert(1, fact("train-mean baseline", _fmt(scores.baseline)))
    sections.append(f'<div class="facts">{"".join(facts)}</div>')

    # CV per fold and target
    fold_cols = {f"fold{f}": {**r.get("per_target", {}), "overall": r["score"]}
                 for f, r in sorted(scores.folds.items())}
    oof_col = {**scores.per_target, "overall": scores.score} if scores.score is not None else {}
    cv_json = read_json(run.cv) if run.cv.is_file() else {}
    baseline = cv_json.get("baseline_train_mean") or {}
    baseline_col = {**baseline.get("per_target", {}), "overall": baseline.get("score")} if baseline else {}
    rows_names = [*targets, "overall"] if len(targets) > 1 else list(targets)  # one target: it is the overall
    header = ["target", *fold_cols, "OOF" if scores.pooled else "mean of folds", *(["train-mean"] if baseline else [])]
    rows = [[name, *(_fmt(c.get(name)) for c in fold_cols.values()), _fmt(oof_col.get(name)),
             *([_fmt(baseline_col.get(name))] if baseline else [])] for name in rows_names]
    cv_section = f"<h2>CV per fold and target ({esc(metric)}, " \
                 f"{'higher' if scores.greater_is_better else 'lower'} is better)</h2>"
    if fold_cols:
        cv_section += table_html(header, rows, total_last=len(targets) > 1)
        columns = {**fold_cols, **({"OOF": oof_col} if scores.pooled else {})}
        cv_section += figure_html(plots.cv_figure(rows_names, columns, baseline_col or None, metric),
                                  "CV per fold and target", "Bars: each fold's best validation score and the pooled "
                                  "OOF score; red ticks: predicting the training mean.")
    else:
        cv_section += "<p>No fold has finished yet.</p>"
    sections.append(cv_section)

    metrics = run_metrics(run)
    if metrics is not None and len(metrics) and not metrics["train_loss"].notna().any():
        sections.append("<h2>Learning curves</h2><p>No optimizer steps to plot: a frozen-backbone run fits a ridge "
                        "head per fold.</p>")
    elif metrics is not None and len(metrics):
        sections.append("<h2>Learning curves</h2>" + figure_html(
            plots.learning_curves_figure(metrics, metric), "learning curves",
            "Training loss per optimizer step (raw and smoothed) and the validation score, per fold."))

    labels = load_labels(comp, summary, data_dir)
    notes += labels.warnings
    regression = any(t.kind == "regression" for t in comp.schema.targets)
    oof = run_oof(comp, run)
    if labels.frame is not None and oof is not None:
        id_col = comp.schema.id_column
        frame = labels.frame.assign(**{id_col: labels.frame[id_col].astype(str)}).set_index(id_col)
        known = oof[oof[id_col].isin(frame.index)]
        if len(known) < len(oof):
            notes.append(f"{len(oof) - len(known)} OOF rows have ids that are not in {labels.folder / 'train.csv'}")
        truth = frame.loc[known[id_col], targets].to_numpy(float)
        pred = known[comp.schema.output_columns].to_numpy(float)
        sections += oof_sections(comp, run, summary, frame, known, truth, pred, labels.folder)
    elif labels.why:
        sections.append(f"<h2>{'Predicted vs true' if regression else 'ROC and precision-recall curves'}</h2>"
                        f"<p class='note'>{esc(labels.why)}</p>")

    sections.append("<h2>Config</h2>" + config_table(summary.config))
    sections.append("<h2>Manifest</h2><pre>" + esc(json.dumps(summary.manifest, indent=2, sort_keys=True,
                                                                    default=str)) + "</pre>")
    if notes:
        sections.insert(0, "".join(f'<p class="note">{esc(n)}</p>' for n in notes))
    return page(f"{summary.name}", f"{comp.title} ({comp.name}) - run folder {run_path}", sections)


def oof_sections(comp: Competition, run: RunDir, summary: RunSummary, frame: pd.DataFrame, known: pd.DataFrame,
                 truth: np.ndarray, pred: np.ndarray, data_folder: Path | None) -> list[str]:
    """The plots of the OOF predictions against their labels, by target kind (kaggle_kit.runs.plots): predicted vs
    true and residuals by text length for regression targets; ROC and precision-recall curves, the reliability
    diagram and the confusion matrix for binary and multiclass ones."""
    id_col = comp.schema.id_column
    targets = comp.schema.targets
    sections = []
    y_true, y_pred, regression = plots.columns_of(truth, pred, targets, ("regression",))
    if regression:
        names = [t.name for t in regression]
        sections.append("<h2>Predicted vs true</h2>" + figure_html(
            plots.predicted_vs_true_figure(y_true, y_pred, regression), "predicted vs true",
            f"Out-of-fold predictions of {len(known)} rows against their labels (dashed: perfect)."))
        try:
            lengths = token_lengths(comp, run, frame.loc[known[id_col]].reset_index(), data_folder)
        except (KitError, OSError, ValueError) as err:
            sections.append(f"<h2>Residuals by text length</h2><p>Not available: {esc(err)}</p>")
        else:
            truncated = float(np.mean(lengths > (summary.max_len or np.inf)))
            sections.append("<h2>Residuals by text length</h2>" + figure_html(
                plots.residuals_by_length_figure(lengths, y_pred - y_true, names, summary.max_len),
                "residuals by text length",
                f"Residuals against the untruncated input length in the run's tokens; "
                f"{100 * truncated:.0f}% of these rows were longer than max_len {summary.max_len}."))
    y_true, y_pred, classified = plots.columns_of(truth, pred, targets, plots.CLASSIFICATION_KINDS)
    if classified:
        scores = plots.classification_scores(y_true, y_pred, classified)
        rows = []
        for target in classified:
            record = scores[target.name]
            ece = f"{record['reliability']['ece']:.4f}"
            if target.kind == "binary":
                rows.append([f"{target.name} (positive: {record['positive_class']})",
                             plots.format_score(record["auc"]), plots.format_score(record["average_precision"]), ece])
                continue
            rows += [[f"{target.name}: {name}", plots.format_score(v["auc"]),
                      plots.format_score(v["average_precision"]), ""] for name, v in record["per_class"].items()]
            rows.append([f"{target.name}: macro", plots.format_score(record["auc_macro"]),
                         plots.format_score(record["average_precision_macro"]), ece])
        sections.append("<h2>ROC and precision-recall curves</h2>"
                        + table_html(["target", "ROC AUC", "average precision", "ECE"], rows, text_columns=(0,))
                        + figure_html(plots.roc_pr_figure(y_true, y_pred, classified, scores),
                                      "ROC and precision-recall curves",
                                      f"Out-of-fold probabilities of {len(known)} rows (before the plugin's "
                                      f"post-processor); a multiclass target one-vs-rest per class, macro = "
                                      f"unweighted mean over classes. Dotted: chance."))
        sections.append("<h2>Reliability</h2>" + figure_html(
            plots.reliability_figure(y_true, y_pred, classified, scores), "reliability diagram",
            f"Observed frequency against mean predicted probability in {plots.RELIABILITY_BINS} equal-width bins "
            f"(numbers: rows per bin); a multiclass target's top-class probability against how often that class is "
            f"right. ECE: the row-weighted mean gap to the diagonal."))
        sections.append("<h2>Confusion matrix</h2>" + figure_html(
            plots.confusion_figure(y_true, y_pred, classified), "confusion matrix",
            "Rows: true class, columns: the most probable class (P >= 0.5 for binary); shading: share of the row."))
    return sections


def config_table(config: dict[str, Any]) -> str:
    """Every setting of run_config.json; those that differ from the kit's defaults are highlighted."""
    try:
        from kaggle_kit.config import TrainConfig

        defaults = dict(vars(TrainConfig()))
    except Exception:  # the config model changes shape over time; the table works without defaults
        defaults = {}
    body = []
    for key in sorted(config):
        changed = key in defaults and json.dumps(defaults[key], default=str) != json.dumps(config[key], default=str)
        cls = ' class="text changed"' if changed else ' class="text"'
        body.append(f"<tr><td>{esc(key)}</td><td{cls}>{esc(format_value(config[key]))}</td>"
                    f"<td class='text'>{esc(format_value(defaults.get(key))) if key in defaults else ''}</td></tr>")
    return ("<table><thead><tr><th>setting</th><th class='text'>value</th><th class='text'>kit default</th></tr>"
            "</thead>"
            f"<tbody>{''.join(body)}</tbody></table><p class='sub'>Highlighted: differs from the kit's default.</p>")


# --- ensembles ----------------------------------------------------------------------------------------------

@dataclass
class EnsembleSpec:
    """Members and weights of a blend: weights[r, t] is run r's weight for target t, as `kit predict` applies them;
    `data` is the ensemble file (or, for --run, the same shape made up here)."""

    competition: str
    runs: list[Path]
    weights: np.ndarray
    per_target: bool
    source: str
    data: dict[str, Any]

    @property
    def recorded_oof(self) -> dict[str, Any]:
        return self.data.get("oof") or {}


def load_ensemble_file(path: Path) -> EnsembleSpec:
    """The file `kit ensemble` writes (kaggle_kit.predict.ensemble_file), read with the same loader as
    `kit predict --ensemble`, so the report scores the blend that would be submitted."""
    from kaggle_kit.predict.ensemble_file import ALL_TARGETS, load_ensemble, read_ensemble_file
    from kaggle_kit.registry import get_competition

    data = read_ensemble_file(path)
    comp = get_competition(str(data.get("competition")))
    paths, weights, _ = load_ensemble(path, comp)
    return EnsembleSpec(comp.name, paths, weights, ALL_TARGETS not in data["weights"], f"from {path}", data)


def ensemble_from_runs(run_paths: Sequence[Path], weights: str | None, data_dir: Path | None) -> EnsembleSpec:
    """`--run A --run B`: weights given, equal (`--weights equal`), or fitted on the OOF rows every run predicted
    (kaggle_kit.predict.ensemble, the same fit as `kit bundle --run`)."""
    from kaggle_kit.predict.ensemble import ensemble_report
    from kaggle_kit.predict.ensemble_file import ALL_TARGETS, weight_matrix

    comp = competition_of(summarize(Path(run_paths[0])))
    n = len(run_paths)
    if weights and weights.strip().lower() == "equal":
        chosen, source = [1.0 / n] * n, "equal (--weights equal)"
    else:
        given = None
        if weights:
            try:
                given = [float(w) for w in weights.split(",")]
            except ValueError:
                raise KitError(f"--weights {weights!r}: expected comma-separated numbers or 'equal'") from None
        fit = ensemble_report(comp, list(run_paths), given, data_dir)
        chosen = [float(w) for w in fit.weights]
        source = ("fitted on the OOF rows every run predicted (as kit bundle --run fits them)" if fit.fitted
                  else "given with --weights")
    data = {"competition": comp.name, "runs": [{"path": str(p), "name": Path(p).name} for p in run_paths],
            "weights": {ALL_TARGETS: chosen}}
    return EnsembleSpec(comp.name, list(run_paths), weight_matrix(data["weights"], comp.schema.target_names, n),
                        False, source, data)


@dataclass
class EnsembleScores:
    """Each member's and the blend's OOF scores per target, on the rows every member predicted."""

    members: list[RunSummary]
    names: list[str]
    member_scores: np.ndarray  # (runs, targets)
    member_overall: list[float]
    blend_scores: np.ndarray  # (targets,)
    blend_overall: float
    n_rows: int
    notes: list[str]
    y_true: np.ndarray | None = None
    blended: np.ndarray | None = None


def score_ensemble(spec: EnsembleSpec, data_dir: Path | None = None) -> EnsembleScores:
    """Scores recomputed from the runs' oof.csv and train.csv; without labels, each run's own CV and the scores
    the ensemble file records."""
    from kaggle_kit.predict.ensemble import aligned_oof
    from kaggle_kit.registry import get_competition

    comp = get_competition(spec.competition)
    targets = comp.schema.target_names
    metric = comp.metric
    members = [summarize(p) for p in spec.runs]
    for member in members:
        if member.competition != comp.name:
            raise KitError(f"{member.path}: a {member.competition} run in a {comp.name} ensemble")
    names = [m.name for m in members]
    if len(set(names)) < len(names):
        names = [str(m.path) for m in members]
    scores = EnsembleScores(members, names, np.full((len(members), len(targets)), np.nan), [np.nan] * len(members),
                            np.full(len(targets), np.nan), np.nan, 0, [])
    labels = load_labels(comp, members[0], data_dir)
    if labels.frame is None:
        scores.notes.append(f"{labels.why}. Member scores below are each run's own CV, on its own rows.")
        for r, m in enumerate(members):
            scores.member_scores[r] = [m.scores.per_target.get(t, np.nan) for t in targets]
            scores.member_overall[r] = m.scores.score if m.scores.score is not None else np.nan
        recorded = spec.recorded_oof
        if recorded.get("blend") is not None:
            scores.blend_overall = float(recorded["blend"])
            scores.blend_scores = np.array([float((recorded.get("blend_per_target") or {}).get(t, np.nan))
                                            for t in targets])
        return scores
    y_true, preds = aligned_oof(comp, spec.runs, labels.frame)
    blended = np.stack([sum(spec.weights[r, t] * preds[r][:, t] for r in range(len(preds)))
                        for t in range(len(targets))], axis=1)
    result = metric(y_true, comp.postprocess(blended), targets)
    scores.blend_scores = np.array([result.per_target[t] for t in targets])
    scores.blend_overall = result.score
    for r, p in enumerate(preds):
        alone = metric(y_true, comp.postprocess(p), targets)
        scores.member_scores[r] = [alone.per_target[t] for t in targets]
        scores.member_overall[r] = alone.score
    recorded = spec.recorded_oof.get("blend")
    if recorded is not None and abs(float(recorded) - scores.blend_overall) > 1e-6:
        scores.notes.append(f"The ensemble file records OOF {metric.name} {float(recorded):.4f}; recomputed here "
                            f"from the runs' oof.csv: {scores.blend_overall:.4f}.")
    scores.notes += labels.warnings
    scores.n_rows, scores.y_true, scores.blended = len(y_true), y_true, comp.postprocess(blended)
    return scores


def ensemble_report_html(spec: EnsembleSpec, data_dir: Path | None = None) -> str:
    from kaggle_kit.registry import get_competition

    comp = get_competition(spec.competition)
    targets = comp.schema.target_names
    metric = comp.metric
    scored = score_ensemble(spec, data_dir)
    members, names, notes = scored.members, scored.names, list(scored.notes)
    member_scores, member_overall = scored.member_scores, scored.member_overall
    blend_scores, blend_overall, n_rows = scored.blend_scores, scored.blend_overall, scored.n_rows
    sections: list[str] = []
    best = (np.nanmax if metric.greater_is_better else np.nanmin)(member_overall) if members else np.nan
    facts = [fact(f"blend OOF {metric.name}", _fmt(blend_overall)), fact("best member", _fmt(best)),
             fact("members", len(members)), fact("OOF rows scored", n_rows or "-"),
             fact("weights", "per target" if spec.per_target else "one per run")]
    held_out = spec.recorded_oof.get("blend_held_out_estimate")
    if held_out is not None:
        facts.insert(1, fact("held-out estimate (kit ensemble)", _fmt(float(held_out))))
    sections.append(f'<div class="facts">{"".join(facts)}</div>')
    header = ["run", "status", "model", "CV (own rows)", f"OOF {metric.name} here",
              *([f"w {t}" for t in targets] if spec.per_target else ["weight"])]
    rows = []
    for r, m in enumerate(members):
        weights = [f"{w:.3f}" for w in spec.weights[r]] if spec.per_target else [f"{spec.weights[r, 0]:.3f}"]
        rows.append([names[r], m.status, m.model or "-", format_cv(m.scores), _fmt(member_overall[r]), *weights])
    rows.append(["blend", "", "", "", _fmt(blend_overall), *([""] * (len(targets) if spec.per_target else 1))])
    sections.append("<h2>Members and weights</h2>" + table_html(header, rows, total_last=True, text_columns=(0, 1, 2))
                    + f"<p class='sub'>Weights {esc(spec.source)}. {metric.name}: "
                    f"{'higher' if metric.greater_is_better else 'lower'} is better.</p>")
    per_target_rows = [[t, *(_fmt(member_scores[r, k]) for r in range(len(members))), _fmt(blend_scores[k])]
                       for k, t in enumerate(targets)]
    per_target_rows.append(["overall", *(_fmt(s) for s in member_overall), _fmt(blend_overall)])
    sections.append(f"<h2>OOF {esc(metric.name)} per target</h2>"
                    + table_html(["target", *names, "blend"], per_target_rows, total_last=True)
                    + figure_html(plots.ensemble_figure(names, spec.weights, member_scores, blend_scores, targets,
                                                        metric.name),
                                  "ensemble weights and scores",
                                  "Left: the weight of each member per target. Right: each member's OOF score per "
                                  "target and the blend's, on the rows every member predicted."))
    if scored.y_true is not None:
        sections.append("<h2>Blend: predicted vs true</h2>" + figure_html(
            plots.predicted_vs_true_figure(scored.y_true, scored.blended, targets), "blend predicted vs true",
            f"The blend's OOF predictions of {n_rows} rows against their labels."))
    sections.append("<h2>Ensemble</h2><pre>" + esc(json.dumps(spec.data, indent=2, default=str)) + "</pre>")
    if notes:
        sections.insert(0, "".join(f'<p class="note">{esc(n)}</p>' for n in notes))
    return page(f"Ensemble of {len(members)} {comp.name} runs", f"{comp.title} ({comp.name}), weights {spec.source}",
                sections)
