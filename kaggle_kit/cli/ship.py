"""`kit bundle`, `kit simulate`, `kit submit` and `kit image-list`: from run folders to a Kaggle submission."""

from __future__ import annotations

from pathlib import Path

import typer

from kaggle_kit.cli.app import (
    app,
    folds_option,
    parse_folds,
    parse_weights,
    quiet_transformers,
    require_module,
    say,
    setup_logging,
    ttt_option,
)


@app.command()
def bundle(
    competition: str = typer.Argument(..., help="Competition plugin name, e.g. ell."),
    run: list[Path] = typer.Option(None, "--run", help="Run folder(s) from `kit train`; repeat to ensemble."),
    weights: str = typer.Option(
        None, help="Comma-separated ensemble weights, one per --run [default: fitted on the runs' OOF]."),
    ensemble: Path = typer.Option(None, "--ensemble", metavar="FILE",
                                  help="A `kit ensemble` file: its runs, folds, per-target weights and fitted "
                                       "post-processing, instead of --run/--weights."),
    slug: str = typer.Option(None, help="Dataset slug, 6-40 chars of a-z, 0-9, - [default: <comp>-kit-<hash>]."),
    owner: str = typer.Option(None, help="Kaggle username [default: KAGGLE_USERNAME or ~/.kaggle/kaggle.json]."),
    out: Path = typer.Option(Path("bundles"), help="Folder that receives <slug>/."),
    license: str = typer.Option("CC0-1.0", "--license",
                                help="The dataset's license, one of the names Kaggle documents (CC0-1.0, "
                                     "CC-BY-SA-3.0, CC-BY-4.0, apache-2.0, ...; MIT is not one)."),
    accelerator: str = typer.Option(
        None, help="The notebook's Kaggle accelerator: t4x2 (Kaggle's default GPU), none (CPU), l4, l4x1, a100, "
                   "h100, rtx-pro-6000 where offered; p100 is refused (retired) [default: t4x2]."),
    gpu: bool = typer.Option(None, "--gpu/--no-gpu", hidden=True,
                             help="Old spelling: --gpu is --accelerator t4x2, --no-gpu is --accelerator none."),
    image_packages: Path = typer.Option(
        None, help="pip freeze of the Kaggle image with a `# python: 3.X` line [default: the kit's dated "
                   "kaggle_image.txt]."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Run the notebook offline on a few training rows (a quick `kit simulate`)."),
    base_model: str = typer.Option(
        None, "--base-model", metavar="SOURCE",
        help="LoRA runs: where the notebook gets their base model - kaggle-model:OWNER/MODEL/FRAMEWORK/VARIATION/"
             "VERSION (a Kaggle Model), dataset:OWNER/SLUG, or copy (into this bundle). Found on Kaggle by its "
             "recorded identity, whatever the folder names."),
    merge: bool = typer.Option(False, "--merge",
                               help="LoRA runs: the notebook folds each fold's adapters into the base weights before "
                                    "predicting (faster per token; 16-bit bases only, refused for 4/8-bit)."),
    force: bool = typer.Option(False, "--force",
                               help="Bundle even when the notebook is projected past the time limit or a model is "
                                    "projected not to fit the accelerator's memory."),
    assume_tflops: float = typer.Option(
        None, "--assume-tflops", min=0.001,
        help="Effective fp16 TFLOP/s per GPU for the time projection [default: the kit's stated assumption for "
             "the accelerator, e.g. 20 for a T4]."),
    quantize: str = typer.Option(None, "--quantize", metavar="int8",
                                 help="CPU-only sessions predict with int8 linear layers (faster); each run's OOF "
                                      "rows are predicted with and without it here and both scores recorded."),
    folds_text: str = folds_option(),
    ttt: str = ttt_option(),
) -> None:
    """A Kaggle dataset (wheels, models, manifest) and an offline inference notebook, in bundles/<slug>/."""
    from kaggle_kit.accelerators import DEFAULT_ACCELERATOR
    from kaggle_kit.errors import KitError
    from kaggle_kit.predict.test_time import parse_spec
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship.bundle import build_bundle
    from kaggle_kit.ship.image import load_image_packages

    require_module("nbformat", "simulate")
    if gpu is not None:
        implied = "t4x2" if gpu else "none"
        if accelerator is not None and accelerator != implied:
            raise KitError(f"--{'gpu' if gpu else 'no-gpu'} (= --accelerator {implied}) contradicts "
                           f"--accelerator {accelerator}; give only --accelerator")
        accelerator = implied
    comp = get_competition(competition)
    if ensemble is not None and (run or weights):
        raise KitError("--ensemble names its runs and weights: drop --run/--weights")
    if ensemble is None and not run:
        raise KitError("give --run RUN_DIR (repeat to blend) or --ensemble FILE")
    weight_list = parse_weights(weights)
    run_folds = parse_folds(folds_text, len(run or []), ensemble is not None)
    image = load_image_packages(image_packages)
    if quantize:
        setup_logging()
        quiet_transformers()
    result = build_bundle(comp, run or [], out, weight_list, slug=slug, owner=owner, license_name=license,
                          accelerator_name=accelerator or DEFAULT_ACCELERATOR, image=image, log=say,
                          ensemble_file=ensemble, base_model=base_model, force=force,
                          assume_tflops=assume_tflops, merge=merge, quantize=quantize, run_folds=run_folds,
                          test_time=parse_spec(ttt))
    say(f"bundle: {result.path} ({result.size_bytes() / 1e6:.1f} MB; wheels: "
        f"{', '.join(Path(w).name for w in result.wheels)})")
    say(f"next: kit simulate --bundle {result.path} --data DIR [--image], then kit submit {comp.name} "
        f"--bundle {result.path}")
    if check:
        from kaggle_kit.predict.ensemble_file import read_ensemble_file
        from kaggle_kit.ship.simulate import print_simulation, quick_check

        setup_logging()
        quiet_transformers()
        first_run = run[0] if run else Path(read_ensemble_file(ensemble)["runs"][0]["path"])
        sim = quick_check(comp, result.path, first_run, log=say, image=image)
        if sim is not None:
            print_simulation(sim, log=say)


@app.command("image-list")
def image_list(
    freeze: Path = typer.Argument(..., help="A `pip freeze` saved in a Kaggle notebook (a kit notebook writes "
                                            "kaggle_image_freeze.txt beside its submission)."),
    out: Path = typer.Option(None, help="Where to write the list [default: the kit's own kaggle_image.txt]."),
    python: str = typer.Option(None, help="The image's Python, X.Y [default: the freeze's `# python:` line]."),
    date: str = typer.Option(None, help="When the freeze was taken, YYYY-MM-DD [default: today]."),
    source: str = typer.Option(None, help="Where the freeze came from [default: the file's name]."),
    gpu_torch: str = typer.Option(None, help="The GPU image's torch build, e.g. 2.10.0+cu128, if the freeze is "
                                             "from a CPU session."),
) -> None:
    """Refresh the Kaggle image list that `kit bundle` checks requirements against, from a pip freeze."""
    from kaggle_kit.ship.image import DEFAULT_IMAGE_LIST, read_freeze, write_image_list

    frozen = read_freeze(freeze)
    image = write_image_list(frozen, out or DEFAULT_IMAGE_LIST, python, date, source or f"pip freeze {freeze.name}",
                             gpu_torch)
    skipped = (f"; skipped {len(frozen.skipped)} without a version: {', '.join(frozen.skipped)}"
               if frozen.skipped else "")
    say(f"wrote {image.path}: {len(image.versions)} packages, Python {image.python}, dated {image.date}{skipped}")


@app.command()
def simulate(
    bundle: Path = typer.Option(..., "--bundle", help="A bundle folder from `kit bundle` (bundles/<slug>)."),
    data: Path = typer.Option(..., "--data", help="Folder with the competition's test.csv and sample_submission.csv."),
    output: Path = typer.Option(None, help="Copy the notebook's submission.csv here."),
    layout: str = typer.Option("new", help="Kaggle's input layout to build: new (/kaggle/input/competitions/<slug>, "
                                           "/kaggle/input/datasets/<owner>/<slug>), old (/kaggle/input/<slug>) or "
                                           "mixed."),
    image: bool = typer.Option(False, "--image", help="Run in a cached venv of the image's Python and pinned "
                                                       "versions (several GB on first use) instead of this Python."),
    python: Path = typer.Option(None, help="With --image: the interpreter of the image's Python version "
                                           "[default: found on PATH or under pyenv]."),
    image_packages: Path = typer.Option(
        None, help="The image list to simulate, as given to kit bundle [default: the kit's kaggle_image.txt]."),
    timeout: int = typer.Option(1800, help="Seconds a notebook cell may run."),
    base_model: Path = typer.Option(None, "--base-model", metavar="DIR",
                                    help="A LoRA bundle's base model folder, mounted as a separate input the way "
                                         "Kaggle attaches a Model (the notebook must find it by its identity)."),
) -> None:
    """Run the bundle's notebook offline, as Kaggle would, and check its submission against `kit predict`."""
    from kaggle_kit.ship.image import load_image_packages
    from kaggle_kit.ship.simulate import print_simulation
    from kaggle_kit.ship.simulate import simulate as run_simulation

    require_module("nbclient", "simulate")
    setup_logging()
    quiet_transformers()
    sim = run_simulation(bundle, data, output, timeout, log=say, layout=layout, use_image=image, python=python,
                         image=load_image_packages(image_packages), base_model=base_model)
    print_simulation(sim, log=say)
    if output:
        say(f"wrote {output}")


@app.command()
def submit(
    competition: str = typer.Argument(..., help="Competition plugin name, e.g. ell."),
    bundle: Path = typer.Option(..., "--bundle", help="A bundle folder from `kit bundle` (bundles/<slug>)."),
    message: str = typer.Option(None, help="Dataset version notes and submission description."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the bundle and metadata, print the calls, change "
                                                          "nothing."),
    poll_seconds: float = typer.Option(30.0, help="Seconds between status checks."),
    wait_hours: float = typer.Option(10.0, help="Give up waiting for each step (dataset, notebook run, score) after "
                                                "this."),
    wait_for_score: bool = typer.Option(True, "--wait-for-score/--no-wait-for-score",
                                        help="Wait until Kaggle has scored the submission (it reruns the notebook)."),
) -> None:
    """Check the bundle, upload the dataset, push and run the notebook on Kaggle, submit it and wait for the score."""
    from kaggle_kit.kaggle_api import DryRunClient, KaggleClient
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship.submit import submit_bundle

    def log(line: str) -> None:
        say(f"(dry run) {line}" if dry_run and not line.startswith("would call") else line)

    comp = get_competition(competition)
    client = DryRunClient(log=say) if dry_run else KaggleClient.from_credentials()
    submit_bundle(comp, bundle, client, message or f"kaggle-kit bundle {bundle.name}", poll_seconds=poll_seconds,
                  wait_seconds=wait_hours * 3600, log=log, wait_for_score=wait_for_score)
