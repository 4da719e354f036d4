"""`kit runs`, `kit runs diff` and `kit report`: every run at a glance, two runs side by side, one run in a page."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

from kaggle_kit.cli.app import app, say
from kaggle_kit.errors import KitError

ROOT_HELP = "Folder holding the run folders (searched recursively)."


class ListByDefault(TyperGroup):
    """`kit runs [COMP]` lists; `kit runs diff A B` compares: anything that is not a subcommand means `list`."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


runs_app = typer.Typer(
    cls=ListByDefault, add_completion=False, rich_markup_mode=None,
    help="Every run under runs/ as one table (`kit runs [COMP]`), or two runs compared (`kit runs diff A B`).")
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def list_runs(
    competition: str = typer.Argument(None, help="Only runs of this competition, e.g. ell."),
    root: Path = typer.Option(Path("runs"), help=ROOT_HELP),
    sort: str = typer.Option("started", help="Column or setting to sort by: cv (best first), started, name, "
                                             "status, model, elapsed, folds, or any setting such as lr."),
    reverse: bool = typer.Option(False, "--reverse", help="Reverse the order."),
    where: list[str] = typer.Option(None, help="Keep runs where KEY=VALUE holds (also != < > <= >=; * and ? match "
                                               "any text); KEY is a column or a setting; repeat to AND them, "
                                               "e.g. --where model=deberta* --where cv<0.46."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (every run's columns, CV per target, config)."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV (the columns and the settings that differ)."),
) -> None:
    """One table of the runs: status (running, complete, partial, interrupted, failed, dead), model, max_len,
    folds done, CV, elapsed time, commit, then the settings that differ between the listed runs."""
    from rich.console import Console

    from kaggle_kit.views import listing

    if json_out and csv_out:
        raise KitError("--json and --csv: choose one")
    runs = listing.load_runs(root, competition)
    conditions = listing.parse_where(where or [], runs)
    runs = [r for r in runs if all(c.holds(r) for c in conditions)]
    runs = listing.sort_runs(runs, sort, reverse)
    differing = listing.differing_settings(runs)
    if json_out:
        sys.stdout.write(listing.to_json(runs, differing))
        return
    if csv_out:
        sys.stdout.write(listing.to_csv(runs, differing))
        return
    if not runs:
        say(f"no runs under {root}" + (f" for {competition}" if competition else "")
            + (" matching --where" if conditions else ""))
        return
    where_text = f" where {' and '.join(where)}" if where else ""
    title = f"{len(runs)} run{'s' if len(runs) != 1 else ''}{' of ' + competition if competition else ''} " \
            f"under {root}{where_text}"
    listing.render_table(runs, differing, Console(), title)


@runs_app.command("diff")
def diff(
    run_a: str = typer.Argument(..., metavar="A", help="A run folder, or a run's name under --root."),
    run_b: str = typer.Argument(..., metavar="B", help="The run to compare with A."),
    root: Path = typer.Option(Path("runs"), help=ROOT_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Config differences, whether the data, code and fold split differ, and CV per target and fold side by side."""
    import json

    from rich.console import Console

    from kaggle_kit.views.diff import diff_runs, render_diff, resolve_run

    result = diff_runs(resolve_run(run_a, root), resolve_run(run_b, root))
    if json_out:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2, default=str) + "\n")
        return
    render_diff(result, Console())


@app.command()
def report(
    run: str = typer.Argument(None, metavar="[RUN]", help="A run folder, or a run's name under --root."),
    ensemble: Path = typer.Option(None, "--ensemble", help="An ensemble file (JSON: runs, weights, OOF scores)."),
    runs: list[str] = typer.Option(None, "--run", help="Runs to report as one blend; repeat (at least two)."),
    weights: str = typer.Option(None, help="With --run: comma-separated weights, or `equal` "
                                           "[default: fitted on the runs' OOF, as kit bundle does]."),
    data: Path = typer.Option(None, help="Folder with the train.csv the runs trained on [default: the run's --data]."),
    out: Path = typer.Option(None, help="HTML file to write [default: RUN/report.html; for an ensemble FILE.html "
                                        "beside it; for --run ensemble_report.html]."),
    root: Path = typer.Option(Path("runs"), help=ROOT_HELP),
) -> None:
    """One self-contained HTML page (no network, no scripts): CV per fold and target, learning curves, predicted vs
    true, residuals by text length, config and manifest; for an ensemble, its members and weights."""
    from kaggle_kit.cli.app import quiet_transformers
    from kaggle_kit.fileio import write_text
    from kaggle_kit.views import report as report_mod
    from kaggle_kit.views.diff import resolve_run

    chosen = [name for name, given in (("RUN", run), ("--ensemble", ensemble), ("--run", runs)) if given]
    if len(chosen) != 1:
        raise KitError("kit report: give exactly one of RUN, --ensemble FILE or --run A --run B"
                       + (f" (got {', '.join(chosen)})" if chosen else ""))
    quiet_transformers()
    if run:
        path = resolve_run(run, root)
        page = report_mod.run_report(path, data)
        target = out or path / "report.html"
    elif ensemble:
        page = report_mod.ensemble_report_html(report_mod.load_ensemble_file(ensemble), data)
        target = out or ensemble.with_suffix(".html")
    else:
        if len(runs) < 2:
            raise KitError("--run: an ensemble report needs at least two runs (for one run: kit report RUN)")
        paths = [resolve_run(r, root) for r in runs]
        page = report_mod.ensemble_report_html(report_mod.ensemble_from_runs(paths, weights, data), data)
        target = out or Path("ensemble_report.html")
    write_text(target, page)
    say(f"wrote {target} ({len(page.encode()) / 1e6:.1f} MB, self-contained): open it in a browser")
