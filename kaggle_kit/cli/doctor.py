"""`kit doctor`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kaggle_kit.cli.app import app, say

STYLES = {"ok": "green", "info": "cyan", "warn": "yellow", "fail": "bold red"}


@app.command()
def doctor(
    image_packages: Path = typer.Option(
        None, help="name==version list of the Kaggle image [default: the kit's dated kaggle_image.txt]."),
    folder: Path = typer.Option(Path("."), help="Where bundles and runs will be written (for the free disk)."),
) -> None:
    """Check this machine before a long run or an upload: versions against the Kaggle image, extras, Kaggle
    credentials (present or absent, never shown), devices and precision, free disk. Exits 1 when a row fails
    (something that would break later); warnings do not fail."""
    from kaggle_kit.doctor import failed, run_checks

    rows = run_checks(image_packages, folder)
    table = Table(title="kit doctor")
    for column in ("check", "status", "value", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:  # Text cells: names like [kaggle] must print as written, not as rich markup
        table.add_row(Text(row.check), Text(row.status, style=STYLES[row.status]), Text(row.value), Text(row.note))
    Console().print(table)
    failures = failed(rows)
    warnings = sum(r.status == "warn" for r in rows)
    if failures:
        say(f"doctor: {len(failures)} failure(s) ({', '.join(r.check for r in failures)}), {warnings} warning(s)")
        raise typer.Exit(1)
    say(f"doctor: no failures, {warnings} warning(s)")
