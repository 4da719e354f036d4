"""The `kit` command line. Every user error ends as one `error:` line and exit code 2, never a traceback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kaggle_kit.errors import KitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Train, bundle and submit transformer models for Kaggle NLP code competitions, offline and reproducibly.",
)
console = Console(stderr=True)
log = logging.getLogger("kaggle_kit")


def setup_logging() -> None:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    for noisy in ("transformers", "httpx", "urllib3", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


@app.command("list")
def list_competitions() -> None:
    """List the competition plugins kaggle-kit knows (built-in and installed through entry points)."""
    from kaggle_kit.registry import all_competitions

    table = Table(title="competitions")
    for column in ("name", "title", "kaggle slug", "metric", "targets", "default loss"):
        table.add_column(column)
    for comp in all_competitions().values():
        table.add_row(comp.name, comp.title, comp.kaggle_slug, comp.metric.name,
                      ", ".join(comp.schema.target_names), comp.default_loss)
    Console().print(table)


@app.command()
def train(
    competition: str = typer.Argument(..., help="Competition plugin name (see `kit list`), e.g. ell."),
    data: Path = typer.Option(None, help="Folder with train.csv [default: data/<competition>/]."),
    model: Path = typer.Option(None, help="Local Hugging Face model folder [default: embedded all-MiniLM-L6-v2]."),
    preset: str = typer.Option(None, help="quick (CPU, <10 min) or full (the GPU reference recipe)."),
    mode: str = typer.Option(None, help="finetune, or frozen: pooled embeddings + a ridge head per fold."),
    config: Path = typer.Option(None, "--config", help="YAML/JSON file of settings; flags override it."),
    out: Path = typer.Option(None, help="Run folder [default: runs/<competition>/<time>-<model>]."),
    resume: bool = typer.Option(False, help="Continue the run in --out (or the latest unfinished one)."),
    folds: int = typer.Option(None, help="Number of CV folds K (>= 2)."),
    train_folds: str = typer.Option(None, help="Comma-separated folds to train, e.g. 0,1 [default: all]."),
    epochs: int = typer.Option(None, help="Epochs per fold."),
    max_len: int = typer.Option(None, help="Max tokens per input (longer inputs are truncated)."),
    batch_size: int = typer.Option(None, help="Training batch size."),
    eval_batch_size: int = typer.Option(None, help="Inference batch size."),
    lr: float = typer.Option(None, help="Learning rate of the top encoder layer."),
    head_lr: float = typer.Option(None, help="Learning rate of the pooling head and output layer."),
    llrd: float = typer.Option(None, help="Layer-wise LR decay per layer going down (1 = off, 0.9 typical)."),
    weight_decay: float = typer.Option(None, help="AdamW weight decay (never on biases/LayerNorm)."),
    scheduler: str = typer.Option(None, help="linear, cosine or constant (all with warmup)."),
    warmup: float = typer.Option(None, help="Warmup as a fraction of all steps."),
    pooling: str = typer.Option(None, help="mean, max, min, cls, attention, weighted-layer, concat-last4."),
    pooling_layers: int = typer.Option(None, help="Layers used by weighted-layer / concat-last4 pooling."),
    loss: str = typer.Option(None, help="rmse, mse, smoothl1, bce, pearson [default: the competition's]."),
    backbone_dropout: float = typer.Option(None, help="Dropout inside the backbone (0 = off, the regression default)."),
    head_dropout: float = typer.Option(None, help="Dropout before the output layer."),
    grad_accum: int = typer.Option(None, help="Gradient accumulation steps."),
    max_grad_norm: float = typer.Option(None, help="Gradient clipping norm."),
    precision: str = typer.Option(None, help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16."),
    grad_checkpointing: bool = typer.Option(None, "--grad-checkpointing/--no-grad-checkpointing",
                                            help="Trade compute for memory."),
    fgm_eps: float = typer.Option(None, help="FGM adversarial step on word embeddings (0 = off)."),
    awp_lr: float = typer.Option(None, help="AWP adversarial weight perturbation rate (0 = off)."),
    awp_eps: float = typer.Option(None, help="AWP perturbation bound, relative to each weight."),
    awp_start_epoch: int = typer.Option(None, help="First epoch (0-based) with AWP."),
    eval_every: int = typer.Option(None, help="Validations per epoch; the best one per fold is kept."),
    ema: float = typer.Option(None, help="EMA decay of weights for evaluation and the saved checkpoint (0 = off)."),
    seed: int = typer.Option(None, help="Seed for folds, shuffling and initialisation."),
    input_format: str = typer.Option(None, help="How a row becomes model input (competition-specific)."),
    max_train_samples: int = typer.Option(None, help="Train on a seeded subsample of this many rows."),
    device: str = typer.Option(None, help="auto, cpu, cuda, cuda:1 ..."),
    threads: int = typer.Option(None, help="CPU threads for torch [default: all cores]; on a machine other "
                                           "jobs share, use fewer than the free cores."),
) -> None:
    """K-fold fine-tuning: OOF predictions, CV report, fold weights and plots in a run folder."""
    from kaggle_kit import config as config_mod
    from kaggle_kit.registry import get_competition
    from kaggle_kit.runs.folder import RunDir, default_run_path, latest_incomplete_run

    comp = get_competition(competition)
    overrides = {k: v for k, v in locals().items()
                 if k in config_mod.FIELDS and k not in ("competition",) and v is not None}
    for key in ("data", "model"):
        if key in overrides:
            overrides[key] = str(overrides[key])
    runs_root = Path("runs")
    if resume:
        run_path = out or latest_incomplete_run(runs_root, comp.name)
        if run_path is None:
            raise KitError(f"--resume: no unfinished run under {runs_root / comp.name}/; pass --out RUN_DIR")
        cfg = RunDir(run_path).load_config()
    else:
        cfg = config_mod.resolve(comp.name, comp.presets, preset, config, overrides)
    from kaggle_kit.models.model import check_model_dir, default_model_path

    model_path = check_model_dir(cfg.model) if cfg.model else default_model_path()
    run_path = Path(run_path if resume else (out or default_run_path(runs_root, comp.name, model_path)))
    setup_logging()
    quiet_transformers()
    from kaggle_kit.train.pipeline import train as run_training

    result = run_training(cfg, run_path, resume=resume)
    print_cv(result.cv, comp.schema.target_names)
    say(f"run folder: {result.run.path}")


def print_cv(cv: dict, targets: list[str]) -> None:
    """Targets as rows, folds as columns: stays readable in an 80-column terminal."""
    table = Table(title=f"CV {cv['metric']} ({'higher' if cv['greater_is_better'] else 'lower'} is better)")
    table.add_column("target")
    folds = list(cv["folds"].items())
    for name, _ in folds:
        table.add_column(name, justify="right")
    table.add_column("OOF", justify="right", style="bold")
    table.add_column("mean baseline", justify="right", style="dim")
    base = cv["baseline_train_mean"]
    for t in targets:
        table.add_row(t, *(f"{f['per_target'][t]:.4f}" for _, f in folds), f"{cv['per_target'][t]:.4f}",
                      f"{base['per_target'][t]:.4f}")
    table.add_row("overall", *(f"{f['score']:.4f}" for _, f in folds), f"{cv['score']:.4f}", f"{base['score']:.4f}",
                  style="bold")
    Console().print(table)


@app.command()
def predict(
    competition: str = typer.Argument(..., help="Competition plugin name."),
    run: list[Path] = typer.Option(..., "--run", help="Run folder(s) from `kit train`; repeat to ensemble."),
    input: Path = typer.Option(..., "--input", help="test.csv to predict."),
    output: Path = typer.Option(Path("submission.csv"), help="Where to write the submission CSV."),
    sample_submission: Path = typer.Option(
        None, help="Row/column order to follow [default: sample_submission.csv beside --input]."),
    weights: str = typer.Option(None, help="Comma-separated ensemble weights, one per --run [default: equal]."),
    batch_size: int = typer.Option(None, help="Inference batch size [default: the run's]."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
) -> None:
    """Fold-averaged, post-processed predictions in the sample submission's row and column order."""
    from kaggle_kit.data.load import load_test, read_csv
    from kaggle_kit.fileio import atomic_path
    from kaggle_kit.predict.inference import predict_runs, submission_frame
    from kaggle_kit.registry import get_competition

    setup_logging()
    quiet_transformers()
    comp = get_competition(competition)
    test_df = load_test(comp, input)
    sample_path = sample_submission or input.parent / "sample_submission.csv"
    sample = read_csv(sample_path) if sample_path.is_file() else None
    weight_list = parse_weights(weights)
    preds = predict_runs(comp, test_df, run, weight_list, device=device, batch_size=batch_size, data_dir=input.parent)
    sub = submission_frame(comp, test_df, preds, sample)
    with atomic_path(output) as tmp:
        sub.to_csv(tmp, index=False)
    say(f"wrote {output} ({len(sub)} rows, columns: {', '.join(sub.columns)})")


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


def say(message: str) -> None:
    """One status line on stderr, unwrapped and without rich markup (paths and lists print as they are)."""
    console.print(message, soft_wrap=True, highlight=False, markup=False)


def parse_weights(weights: str | None) -> list[float] | None:
    if not weights:
        return None
    try:
        return [float(w) for w in weights.split(",")]
    except ValueError:
        raise KitError(f"--weights {weights!r}: expected comma-separated numbers, e.g. 0.6,0.4") from None


def require_module(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise KitError(f"{module} is not installed: pip install 'kaggle-kit[{extra}]'")


def main() -> None:
    try:
        app()
    except KitError as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        say("interrupted: finished folds are saved; continue with `kit train COMP --resume`")
        raise SystemExit(130) from None
