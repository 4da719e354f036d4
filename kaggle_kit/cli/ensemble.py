"""`kit ensemble`: blend weights for several runs, fitted on their OOF predictions."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kaggle_kit.cli.app import app, say, setup_logging


@app.command()
def ensemble(
    competition: str = typer.Argument(..., help="Competition plugin name, e.g. ell."),
    run: list[Path] = typer.Option(None, "--run", metavar="DIR", help="A finished run folder; repeat for each member."),
    runs: list[str] = typer.Option(None, "--runs", metavar="GLOB",
                                   help="Run folders by pattern, e.g. 'runs/ell/*' (quote it); finished ones only."),
    out: Path = typer.Option(None, "--out", metavar="FILE",
                             help="Ensemble file to write [default: ensembles/<competition>-<N>runs.json]; a PNG of "
                                  "the climb is written beside it."),
    max_steps: int = typer.Option(30, min=1, metavar="N",
                                  help="Hill-climbing steps to try (the count is chosen held out)."),
    chunks: int = typer.Option(5, min=2, metavar="N",
                               help="Held-out chunks of the OOF rows that choose the step count."),
    data: Path = typer.Option(None, metavar="DIR", help="Folder with train.csv [default: the first run's]."),
) -> None:
    """Hill climbing with replacement over the runs' OOF predictions, per target where the metric is a mean of
    per-target scores; the number of steps is chosen on held-out chunks of the OOF rows, so the blend does not
    fit noise. Writes an ensemble file for `kit predict --ensemble` and `kit bundle --ensemble`."""
    from kaggle_kit.predict.ensemble_file import (
        expand_runs,
        fit_ensemble,
        runs_table,
        targets_table,
        write_ensemble,
    )
    from kaggle_kit.registry import get_competition

    setup_logging()
    comp = get_competition(competition)
    members = expand_runs(run or [], runs or [])
    fit = fit_ensemble(comp, members, data, max_steps=max_steps, chunks=chunks)
    out = out or Path("ensembles") / f"{comp.name}-{len(members)}runs.json"
    write_ensemble(fit, out)
    names = comp.schema.target_names
    direction = "higher" if comp.metric.greater_is_better else "lower"
    rows = fit.data["fit"]["n_oof_rows"]
    members_table = Table(title=f"{len(members)} runs, OOF {comp.metric.name} on the {rows} rows all predicted")
    for column in ("run", "OOF", "weight", "weight per target" if len(fit.data["weights"]) > 1 else "all targets"):
        members_table.add_column(column, justify="left" if column == "run" else "right")
    for row in runs_table(fit.data, names):
        members_table.add_row(*row)
    Console().print(members_table)
    blend_table = Table(title=f"blend vs best single run ({direction} is better)")
    for column in ("target", "best single", "blend"):
        blend_table.add_column(column, justify="left" if column == "target" else "right")
    for row in targets_table(fit.data, names):
        blend_table.add_row(*row)
    Console().print(blend_table)
    say(f"blend, held out (the honest estimate): {fit.data['oof']['blend_held_out_estimate']:.4f} "
        f"{comp.metric.name}; steps per target: {fit.data['fit']['steps']}")
    say(f"ensemble file: {out} (climb plot {out.with_suffix('.png')}); use it with kit predict/bundle "
        f"{comp.name} --ensemble {out}")
