"""`kit pseudo-label`."""

from __future__ import annotations

from pathlib import Path

import typer

from kaggle_kit.cli.app import app, quiet_transformers, say, setup_logging
from kaggle_kit.errors import KitError


@app.command("pseudo-label")
def pseudo_label_command(
    competition: str = typer.Argument(..., help="Competition plugin name."),
    texts: Path = typer.Option(..., "--texts", metavar="FILE",
                               help="Unlabelled rows in the competition's test format (id and input columns)."),
    out: Path = typer.Option(..., "--out", metavar="FILE", help="The pseudo-label CSV to write (for kit train "
                                                                "--pseudo FILE); FILE's stem + .folds.json beside it."),
    run: list[Path] = typer.Option(None, "--run", help="Teacher run folder(s); repeat for an equal-weight blend."),
    ensemble: Path = typer.Option(None, "--ensemble", metavar="FILE", help="A `kit ensemble` file as the teacher."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
) -> None:
    """Soft labels for unlabelled rows from a teacher (runs or an ensemble): one per target, its spread across the
    teacher's fold models, and per-fold labels that keep a student's OOF honest."""
    from kaggle_kit.predict.pseudo_label import pseudo_label
    from kaggle_kit.registry import get_competition

    setup_logging()
    quiet_transformers()
    comp = get_competition(competition)
    weights = folds = None
    if ensemble is not None:
        from kaggle_kit.predict.ensemble_file import load_ensemble

        if run:
            raise KitError("--ensemble names its runs: drop --run")
        run, weights, folds = load_ensemble(ensemble, comp)
    elif not run:
        raise KitError("give the teacher: --run RUN_DIR (repeat to blend) or --ensemble FILE")
    if out.suffix != ".csv":
        raise KitError(f"--out {out}: expected a .csv file")
    df = pseudo_label(comp, texts, run, weights, folds, out, device=device)
    per_fold = any("@fold" in c for c in df.columns)
    say(f"wrote {out}: {len(df)} rows, soft labels for {', '.join(comp.schema.target_names)}, their spread across "
        f"the teacher's fold models" + (", and per-fold labels" if per_fold else "")
        + f"; train with: kit train {comp.name} --pseudo {out}")
