"""`kit runs diff A B`: what differs between two runs, and what it did to the score.

Config differences, the data files' sha256, the code commit and package versions, whether the folds are the
same split (per-fold scores compare like for like only then), and the CV per target and per fold side by side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import sha256_file
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.views.listing import RunSummary, find_runs, format_value, summarize


def resolve_run(ref: str | Path, root: Path) -> Path:
    """A run folder given as a path, or by its name (or competition/name) under root."""
    path = Path(ref)
    if (path / "run_config.json").is_file():
        return path
    if path.exists():
        raise KitError(f"{path}: not a kaggle-kit run folder (no run_config.json)")
    if not root.is_dir():
        raise KitError(f"run {str(ref)!r}: no such folder, and no --root {root} to look it up in")
    text = str(ref).strip("/")
    matches = [p for p in find_runs(root) if p.name == text or p.relative_to(root).as_posix() == text
               or p.relative_to(root).as_posix().endswith("/" + text)]
    if not matches:
        raise KitError(f"run {text!r}: no run folder of that name under {root} (see `kit runs --root {root}`)")
    if len(matches) > 1:
        raise KitError(f"run {text!r} is ambiguous under {root}: "
                       f"{', '.join(p.relative_to(root).as_posix() for p in matches)}; give the path")
    return matches[0]


@dataclass
class Row:
    key: str
    a: Any
    b: Any


@dataclass
class RunDiff:
    a: RunSummary
    b: RunSummary
    config: list[Row]
    same_settings: int
    data: list[Row]
    commit: Row
    versions: list[Row]
    same_split: bool | None
    per_target: list[Row]
    per_fold: list[Row]

    @property
    def comparable(self) -> bool:
        return self.a.competition == self.b.competition

    @property
    def data_differs(self) -> bool:
        return any(r.a != r.b for r in self.data)

    @property
    def code_differs(self) -> bool:
        return self.commit.a != self.commit.b

    def better(self, a: float | None, b: float | None) -> str:
        """Whether B is better than A, in the metric's direction."""
        if a is None or b is None or not self.comparable:
            return ""
        if abs(a - b) < 1e-12:
            return "same"
        higher = self.a.scores.greater_is_better
        if higher is None:
            return ""
        return "better" if (b > a) == higher else "worse"

    def as_dict(self) -> dict[str, Any]:
        def rows(items: list[Row]) -> dict[str, dict[str, Any]]:
            return {r.key: {"a": r.a, "b": r.b} for r in items}

        return {
            "a": {"name": self.a.name, "path": str(self.a.path), "status": self.a.status},
            "b": {"name": self.b.name, "path": str(self.b.path), "status": self.b.status},
            "same_competition": self.comparable, "metric": self.a.scores.metric,
            "greater_is_better": self.a.scores.greater_is_better,
            "config": rows(self.config), "same_settings": self.same_settings,
            "data": rows(self.data), "data_differs": self.data_differs,
            "commit": {"a": self.commit.a, "b": self.commit.b}, "code_differs": self.code_differs,
            "versions": rows(self.versions), "same_split": self.same_split,
            "cv_pooled": {"a": self.a.scores.pooled, "b": self.b.scores.pooled},
            "per_target": rows(self.per_target), "per_fold": rows(self.per_fold),
            "per_fold_per_target": {
                side: {f"fold{f}": r.get("per_target", {}) for f, r in run.scores.folds.items()}
                for side, run in (("a", self.a), ("b", self.b))},
        }


def _folds_hash(run: RunDir) -> str | None:
    return sha256_file(run.folds_csv) if run.folds_csv.is_file() else None


def diff_runs(path_a: Path, path_b: Path) -> RunDiff:
    a, b = summarize(path_a), summarize(path_b)
    keys = sorted(set(a.config) | set(b.config))
    config = [Row(k, a.config.get(k), b.config.get(k)) for k in keys
              if json.dumps(a.config.get(k), sort_keys=True) != json.dumps(b.config.get(k), sort_keys=True)]
    data_a, data_b = a.manifest.get("data") or {}, b.manifest.get("data") or {}
    data = [Row(name, (data_a.get(name) or {}).get("sha256"), (data_b.get(name) or {}).get("sha256"))
            for name in sorted(set(data_a) | set(data_b))]
    versions_a, versions_b = a.manifest.get("versions") or {}, b.manifest.get("versions") or {}
    versions = [Row(name, versions_a.get(name), versions_b.get(name))
                for name in sorted(set(versions_a) | set(versions_b)) if versions_a.get(name) != versions_b.get(name)]
    hash_a, hash_b = _folds_hash(RunDir(path_a)), _folds_hash(RunDir(path_b))
    same_split = None if hash_a is None or hash_b is None else hash_a == hash_b
    targets = list(a.scores.per_target) + [t for t in b.scores.per_target if t not in a.scores.per_target]
    per_target = [Row(t, a.scores.per_target.get(t), b.scores.per_target.get(t)) for t in targets]
    per_target.append(Row("overall", a.scores.score, b.scores.score))
    folds = sorted(set(a.scores.folds) | set(b.scores.folds))
    per_fold = [Row(f"fold{f}", (a.scores.folds.get(f) or {}).get("score"), (b.scores.folds.get(f) or {}).get("score"))
                for f in folds]
    return RunDiff(a, b, config, len(keys) - len(config), data, Row("git_commit", a.commit, b.commit), versions,
                   same_split, per_target, per_fold)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _delta(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{b - a:+.4f}"


def render_diff(diff: RunDiff, console) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    def say(text: str, style: str | None = None) -> None:
        console.print(text, style=style, highlight=False, markup=False)

    a, b = diff.a, diff.b
    say(f"A: {a.path}  ({a.competition}, {a.status})")
    say(f"B: {b.path}  ({b.competition}, {b.status})")

    if diff.config:
        table = Table(title="settings that differ", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
        table.add_column("setting", no_wrap=True)
        table.add_column("A", overflow="fold")
        table.add_column("B", overflow="fold")
        for row in diff.config:
            table.add_row(Text(row.key), Text(format_value(row.a)), Text(format_value(row.b)))
        console.print(table)
    say(f"{diff.same_settings} other settings are the same" if diff.config else
        f"all {diff.same_settings} settings are the same")

    if not diff.data:
        say("data: not recorded")
    for row in diff.data:
        state = "same" if row.a == row.b else "DIFFERS"
        say(f"data {row.key}: {state} (A {(row.a or 'absent')[:12]}, B {(row.b or 'absent')[:12]})",
            None if row.a == row.b else "bold yellow")
    code = "same" if not diff.code_differs else "DIFFERS"
    say(f"code: {code} (A {_commit(diff.commit.a)}, B {_commit(diff.commit.b)}; * uncommitted changes)"
        if any(str(c).endswith("-dirty") for c in (diff.commit.a, diff.commit.b)) else
        f"code: {code} (A {_commit(diff.commit.a)}, B {_commit(diff.commit.b)})",
        None if not diff.code_differs else "bold yellow")
    for row in diff.versions:
        say(f"  {row.key}: A {format_value(row.a)}, B {format_value(row.b)}", "yellow")
    if diff.same_split is not None:
        say("folds: the same split" if diff.same_split else
            "folds: DIFFERENT splits (folds.csv differs): per-fold scores do not compare like for like",
            None if diff.same_split else "bold yellow")

    if not diff.comparable:
        say(f"different competitions ({a.competition} vs {b.competition}): scores are not compared", "bold yellow")
        return
    metric = a.scores.metric or "score"
    direction = "" if a.scores.greater_is_better is None else (
        " (higher is better)" if a.scores.greater_is_better else " (lower is better)")
    marks = {True: "", False: "~"}
    table = Table(title=f"CV {metric}{direction}", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for column, justify in (("", "left"), ("A", "right"), ("B", "right"), ("B - A", "right"), ("B is", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    for row in diff.per_target:
        overall = row.key == "overall"
        cells = [row.key, _score(row.a), _score(row.b), _delta(row.a, row.b), diff.better(row.a, row.b)]
        if overall:
            cells[1] = marks[a.scores.pooled] + cells[1] if row.a is not None else cells[1]
            cells[2] = marks[b.scores.pooled] + cells[2] if row.b is not None else cells[2]
        table.add_row(*cells, style="bold" if overall else None, end_section=overall)
    for row in diff.per_fold:
        table.add_row(row.key, _score(row.a), _score(row.b), _delta(row.a, row.b), diff.better(row.a, row.b))
    console.print(table)
    if not (a.scores.pooled and b.scores.pooled):
        say("~ mean of the finished folds (no pooled OOF score yet)", "dim")
    if set(a.scores.folds) != set(b.scores.folds):
        say(f"A's scores cover {_folds(a)} and B's {_folds(b)}: the target and overall rows are on different "
            f"rows; compare the folds both trained", "yellow")


def _folds(run: RunSummary) -> str:
    folds = sorted(run.scores.folds)
    return ("fold " if len(folds) == 1 else "folds ") + (",".join(map(str, folds)) or "none")


def _commit(commit: str | None) -> str:
    if not commit:
        return "not recorded"
    return commit[:12] + ("*" if commit.endswith("-dirty") else "")
