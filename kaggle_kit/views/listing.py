"""`kit runs`: every run folder under a root as one table, so ten runs compare at a glance.

Everything is read from the run folders as they are (run_config.json, manifest.json, cv.json, folds/*.json);
nothing is cached and nothing is written. A running or dead run shows the mean of its finished folds' scores,
marked `~`, because its pooled OOF score does not exist yet.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.runs.status import effective_status, elapsed_seconds

# Columns of the table, in order; each is also a key for --sort and --where (besides any setting).
COLUMNS = ("name", "competition", "status", "model", "max_len", "folds", "cv", "elapsed", "commit")
KEY_ALIASES = {"comp": "competition", "run": "name", "time": "elapsed", "score": "cv"}
# Shown as their own columns, so never again among "settings that differ".
SHOWN_SETTINGS = ("competition", "model", "max_len")


@dataclass
class Scores:
    """A run's CV: pooled from cv.json when the run finished, else the mean of its finished folds."""

    score: float | None
    per_target: dict[str, float]
    pooled: bool
    folds: dict[int, dict[str, Any]]
    metric: str | None = None
    greater_is_better: bool | None = None
    baseline: float | None = None


def _read(path: Path) -> Any:
    try:
        return read_json(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def run_scores(run: RunDir) -> Scores:
    folds = {f: result for f in run.cv_folds() if isinstance(result := _read(run.fold_result(f)), dict)}
    cv = _read(run.cv)
    if isinstance(cv, dict) and "score" in cv:
        return Scores(cv["score"], dict(cv.get("per_target", {})), True, folds, cv.get("metric"),
                      cv.get("greater_is_better"), (cv.get("baseline_train_mean") or {}).get("score"))
    if not folds:
        return Scores(None, {}, False, folds)
    targets = sorted({t for r in folds.values() for t in r.get("per_target", {})})
    per_target = {t: sum(r["per_target"][t] for r in folds.values()) / len(folds) for t in targets
                  if all(t in r.get("per_target", {}) for r in folds.values())}
    return Scores(sum(r["score"] for r in folds.values()) / len(folds), per_target, False, folds)


def model_label(manifest: dict[str, Any], config: dict[str, Any]) -> str | None:
    """The model folder's name (a Hugging Face folder named `model` is called by its parent's name)."""
    raw = manifest.get("model_path") or config.get("model")
    if not raw:
        return None
    path = Path(str(raw))
    return path.parent.name if path.name == "model" else path.name


def _metric_direction(competition: str | None) -> tuple[str | None, bool | None]:
    if not competition:
        return None, None
    try:
        from kaggle_kit.registry import get_competition

        metric = get_competition(competition).metric
    except KitError:
        return None, None
    return metric.name, metric.greater_is_better


@dataclass
class RunSummary:
    path: Path
    name: str
    competition: str | None
    status: str
    model: str | None
    max_len: int | None
    folds_done: int
    folds_planned: int | None
    folds_damaged: list[int]
    scores: Scores
    elapsed: float | None
    commit: str | None
    started: str | None
    config: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)

    @property
    def cv(self) -> float | None:
        return self.scores.score

    @property
    def folds(self) -> str:
        done = f"{self.folds_done}/{self.folds_planned}" if self.folds_planned is not None else str(self.folds_done)
        return done + ("!" if self.folds_damaged else "")

    def value(self, key: str) -> Any:
        """A column's value, or else the setting's, for --sort and --where."""
        key = KEY_ALIASES.get(key, key)
        if key == "folds":
            return self.folds_done
        if key in COLUMNS or key in ("started", "path"):
            return getattr(self, key)
        return self.config.get(key)

    def as_dict(self, differing: list[str] = ()) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "competition": self.competition, "status": self.status,
            "model": self.model, "max_len": self.max_len, "folds_done": self.folds_done,
            "folds_planned": self.folds_planned, "folds_damaged": self.folds_damaged,
            "folds_total": self.config.get("folds"), "cv": self.cv,
            "cv_pooled": self.scores.pooled, "cv_per_target": self.scores.per_target, "metric": self.scores.metric,
            "greater_is_better": self.scores.greater_is_better, "elapsed_s": self.elapsed, "commit": self.commit,
            "started": self.started, "differs": {k: self.config.get(k) for k in differing}, "config": self.config,
        }


def summarize(path: Path) -> RunSummary:
    run = RunDir(path)
    config = _read(run.config)
    config = config if isinstance(config, dict) else {}
    manifest = _read(run.manifest)
    manifest = manifest if isinstance(manifest, dict) else {}
    scores = run_scores(run)
    competition = config.get("competition") or manifest.get("competition")
    if scores.metric is None:
        scores.metric, scores.greater_is_better = _metric_direction(competition)
    planned = config.get("train_folds")
    if planned is None and isinstance(config.get("folds"), int):
        planned = list(range(config["folds"]))
    status = effective_status(manifest) if manifest else ("unreadable" if run.manifest.exists() else "unknown")
    return RunSummary(
        path=path, name=path.name, competition=competition, status=status, model=model_label(manifest, config),
        max_len=config.get("max_len"), folds_done=len(scores.folds),
        folds_planned=len(planned) if isinstance(planned, list) else None, folds_damaged=run.damaged_folds(),
        scores=scores,
        elapsed=elapsed_seconds(manifest) if manifest else None, commit=manifest.get("git_commit"),
        started=manifest.get("started"), config=config, manifest=manifest)


def find_runs(root: Path) -> list[Path]:
    """Run folders (those holding run_config.json) under root, not looking inside a run folder."""
    if not root.is_dir():
        raise KitError(f"--root {root}: no such folder (runs are written to runs/ under the current folder)")
    found: list[Path] = []
    for config in sorted(root.rglob("run_config.json")):
        folder = config.parent
        if any(part.startswith(".") for part in folder.relative_to(root).parts):
            continue
        if any(folder.is_relative_to(other) for other in found):
            continue
        found.append(folder)
    return found


def load_runs(root: Path, competition: str | None = None) -> list[RunSummary]:
    runs = [summarize(path) for path in find_runs(root)]
    return [r for r in runs if competition is None or r.competition == competition]


def differing_settings(runs: list[RunSummary]) -> list[str]:
    """Settings whose value is not the same in every listed run (the table's columns excepted)."""
    if len(runs) < 2:
        return []
    keys = sorted({k for r in runs for k in r.config} - set(SHOWN_SETTINGS))
    return [k for k in keys if len({json.dumps(r.config.get(k), sort_keys=True) for r in runs}) > 1]


# --- filter and sort -------------------------------------------------------------------------------------------

WHERE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(<=|>=|!=|=|<|>)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: str

    def holds(self, run: RunSummary) -> bool:
        actual = run.value(self.key)
        if actual is None:
            return self.op == "!=" and self.value.lower() not in ("none", "null", "")
        number = _number(actual)
        wanted = _number(self.value)
        if self.op in ("=", "!="):
            if number is not None and wanted is not None:
                equal = math.isclose(number, wanted, rel_tol=1e-9)
            else:
                equal = fnmatch.fnmatchcase(format_value(actual).lower(), self.value.lower())
            return equal if self.op == "=" else not equal
        if number is None or wanted is None:
            left, right = format_value(actual), self.value
        else:
            left, right = number, wanted
        return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[self.op]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_where(expressions: list[str], runs: list[RunSummary]) -> list[Condition]:
    known = set(COLUMNS) | set(KEY_ALIASES) | {"started", "path"} | {k for r in runs for k in r.config}
    conditions = []
    for text in expressions:
        match = WHERE.match(text)
        if not match:
            raise KitError(f"--where {text!r}: expected KEY=VALUE (or !=, <, >, <=, >=), e.g. model=deberta* "
                           f"or cv<0.46")
        key = match.group(1).replace("-", "_")
        if key not in known:
            raise KitError(f"--where {text!r}: unknown key {key!r}; use a column ({', '.join(COLUMNS)}) "
                           f"or a setting of run_config.json")
        conditions.append(Condition(key, match.group(2), match.group(3)))
    return conditions


def sort_runs(runs: list[RunSummary], key: str, reverse: bool = False) -> list[RunSummary]:
    """`cv` sorts best first within each competition (MCRMSE ascending, Pearson descending); missing values last."""
    key = KEY_ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
    known = set(COLUMNS) | {"started", "path"} | {k for r in runs for k in r.config}
    if key not in known:
        raise KitError(f"--sort {key!r}: unknown; use a column ({', '.join(COLUMNS)}), started, or a setting")

    def sort_key(run: RunSummary):
        value = run.value(key)
        if key == "cv":
            if value is None:
                return (run.competition or "", 1, 0.0)
            return (run.competition or "", 0, -value if run.scores.greater_is_better else value)
        number = _number(value)
        if value is None:
            return (1, 0, "")
        return (0, 0, number) if number is not None else (0, 1, format_value(value))

    present = sorted(runs, key=sort_key, reverse=reverse)
    if reverse:  # missing values stay last
        present = [r for r in present if r.value(key) is not None] + [r for r in present if r.value(key) is None]
    return present


# --- output ----------------------------------------------------------------------------------------------------

def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def format_elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_commit(commit: str | None) -> str:
    if not commit:
        return "-"
    return commit[:7] + ("*" if commit.endswith("-dirty") else "")


def format_cv(scores: Scores) -> str:
    if scores.score is None:
        return "-"
    return f"{'' if scores.pooled else '~'}{scores.score:.4f}"


def render_table(runs: list[RunSummary], differing: list[str], console, title: str) -> None:
    """The table, then the settings that differ per run; never wider than the console.

    Status, max_len, folds, CV, time and commit are never cut. When a model column does not fit, the model goes
    under the run's name in the first column; names are cut last (their unique part, the time stamp, comes first).
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    one_competition = len({r.competition for r in runs}) == 1
    styles = {"complete": "green", "running": "cyan", "dead": "red", "failed": "red", "interrupted": "yellow"}
    fixed = {  # header -> cells, never cut
        **({} if one_competition else {"comp": [r.competition or "-" for r in runs]}),
        "status": [r.status for r in runs], "len": [format_value(r.max_len) for r in runs],
        "folds": [r.folds for r in runs], "CV": [format_cv(r.scores) for r in runs],
        "time": [format_elapsed(r.elapsed) for r in runs], "commit": [format_commit(r.commit) for r in runs]}
    widths = {h: max(len(h), *(len(c) for c in cells)) for h, cells in fixed.items()}
    names = [r.name for r in runs]
    models = [r.model or "-" for r in runs]
    name_width = max(len("run"), *(len(n) for n in names))
    model_width = max(len("model"), *(len(m) for m in models))
    gaps = 2 * (len(fixed) + 1)
    separate_model = sum(widths.values()) + gaps + name_width + model_width <= console.width

    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1),
                  collapse_padding=True, title_justify="left")
    table.add_column("run" if separate_model else "run / model", no_wrap=True, overflow="ellipsis", min_width=8)
    headers = list(fixed)
    if separate_model:
        headers.insert(2 if "comp" in fixed else 1, "model")
    for header in headers:
        if header == "model":
            table.add_column("model", no_wrap=True, overflow="ellipsis", min_width=5)
        else:
            table.add_column(header, no_wrap=True, min_width=widths[header],
                             justify="right" if header in ("len", "folds", "CV", "time") else "left")
    for i, run in enumerate(runs):
        first = Text(run.name) if separate_model else Text.assemble(run.name, "\n", (models[i], "dim"))
        cells = {h: Text(fixed[h][i]) for h in fixed}  # Text: a name with [brackets] is shown, not parsed
        cells["status"].stylize(styles.get(run.status, ""))
        if separate_model:
            cells["model"] = Text(models[i])
        table.add_row(first, *(cells[h] for h in headers))
    console.print(table)
    notes = []
    if any(not r.scores.pooled and r.scores.score is not None for r in runs):
        notes.append("~ mean of the finished folds (no pooled OOF score yet)")
    if any(r.folds_damaged for r in runs):
        notes.append("! a finished fold's weight file is missing or changed (kit predict refuses it; --folds leaves "
                     "it out)")
    if any((r.commit or "").endswith("-dirty") for r in runs):
        notes.append("* uncommitted changes")
    if notes:
        console.print("; ".join(notes), style="dim", highlight=False)
    if differing:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, overflow="ellipsis", max_width=30)
        grid.add_column(overflow="fold")
        for run in runs:
            grid.add_row(Text(run.name), Text("  ".join(f"{k}={format_value(run.config.get(k))}" for k in differing)))
        console.print(Text("settings that differ:", style="bold"))
        console.print(grid)


def to_json(runs: list[RunSummary], differing: list[str]) -> str:
    return json.dumps([r.as_dict(differing) for r in runs], indent=2, default=str) + "\n"


def to_csv(runs: list[RunSummary], differing: list[str]) -> str:
    buffer = io.StringIO()
    fixed = ["name", "path", "competition", "status", "model", "max_len", "folds_done", "folds_planned", "cv",
             "cv_pooled", "metric", "elapsed_s", "commit", "started"]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fixed + differing)
    for run in runs:
        row = run.as_dict(differing)
        writer.writerow([("" if row[k] is None else row[k]) for k in fixed]
                        + [format_value(run.config.get(k)) for k in differing])
    return buffer.getvalue()
