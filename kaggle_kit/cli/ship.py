"""`kit bundle`, `kit simulate` and `kit submit`: from run folders to a Kaggle submission."""

from __future__ import annotations

from pathlib import Path

import typer

from kaggle_kit.cli.app import app, parse_weights, quiet_transformers, require_module, say, setup_logging


@app.command()
def bundle(
    competition: str = typer.Argument(..., help="Competition plugin name, e.g. ell."),
    run: list[Path] = typer.Option(..., "--run", help="Run folder(s) from `kit train`; repeat to ensemble."),
    weights: str = typer.Option(
        None, help="Comma-separated ensemble weights, one per --run [default: fitted on the runs' OOF]."),
    slug: str = typer.Option(None, help="Dataset slug, 6-40 chars of a-z, 0-9, - [default: <comp>-kit-<hash>]."),
    owner: str = typer.Option(None, help="Kaggle username [default: KAGGLE_USERNAME or ~/.kaggle/kaggle.json]."),
    out: Path = typer.Option(Path("bundles"), help="Folder that receives <slug>/."),
    license: str = typer.Option("CC0-1.0", "--license", help="The dataset's Kaggle license name."),
    gpu: bool = typer.Option(True, "--gpu/--no-gpu", help="Run the notebook on a Kaggle GPU."),
    image_packages: Path = typer.Option(
        None, help="name==version list of the Kaggle image [default: the kit's dated kaggle_image.txt]."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Run the notebook offline on a few training rows (a quick `kit simulate`)."),
) -> None:
    """A Kaggle dataset (wheels, models, manifest) and an offline inference notebook, in bundles/<slug>/."""
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship.bundle import build_bundle, load_image_packages

    require_module("nbformat", "simulate")
    comp = get_competition(competition)
    weight_list = parse_weights(weights)
    image = load_image_packages(image_packages)
    result = build_bundle(comp, run, out, weight_list, slug=slug, owner=owner, license_name=license, gpu=gpu,
                          image=image, log=say)
    say(f"bundle: {result.path} ({result.size_bytes() / 1e6:.1f} MB; wheels: "
        f"{', '.join(Path(w).name for w in result.wheels)})")
    say(f"next: kit simulate --bundle {result.path} --data DIR, then kit submit {comp.name} --bundle {result.path}")
    if check:
        from kaggle_kit.ship.simulate import print_simulation, quick_check

        setup_logging()
        quiet_transformers()
        sim = quick_check(comp, result.path, run[0], log=say)
        if sim is not None:
            print_simulation(sim, log=say)


@app.command()
def simulate(
    bundle: Path = typer.Option(..., "--bundle", help="A bundle folder from `kit bundle` (bundles/<slug>)."),
    data: Path = typer.Option(..., "--data", help="Folder with the competition's test.csv and sample_submission.csv."),
    output: Path = typer.Option(None, help="Copy the notebook's submission.csv here."),
    timeout: int = typer.Option(1800, help="Seconds a notebook cell may run."),
) -> None:
    """Run the bundle's notebook offline, as Kaggle would, and check its submission against `kit predict`."""
    from kaggle_kit.ship.simulate import print_simulation
    from kaggle_kit.ship.simulate import simulate as run_simulation

    require_module("nbclient", "simulate")
    setup_logging()
    quiet_transformers()
    print_simulation(run_simulation(bundle, data, output, timeout, log=say), log=say)
    if output:
        say(f"wrote {output}")


@app.command()
def submit(
    competition: str = typer.Argument(..., help="Competition plugin name, e.g. ell."),
    bundle: Path = typer.Option(..., "--bundle", help="A bundle folder from `kit bundle` (bundles/<slug>)."),
    message: str = typer.Option(None, help="Dataset version notes and submission description."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate the metadata and print the calls, change nothing."),
    poll_seconds: float = typer.Option(30.0, help="Seconds between status checks."),
    wait_hours: float = typer.Option(10.0, help="Give up waiting for the dataset or the kernel run after this."),
) -> None:
    """Upload the dataset, push and run the notebook on Kaggle, then submit that notebook version."""
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship.kaggle_client import DryRunClient, KaggleClient
    from kaggle_kit.ship.submit import submit_bundle

    def log(line: str) -> None:
        say(f"(dry run) {line}" if dry_run and not line.startswith("would call") else line)

    comp = get_competition(competition)
    client = DryRunClient(log=say) if dry_run else KaggleClient.from_credentials()
    submit_bundle(comp, bundle, client, message or f"kaggle-kit bundle {bundle.name}", poll_seconds=poll_seconds,
                  wait_seconds=wait_hours * 3600, log=log)
