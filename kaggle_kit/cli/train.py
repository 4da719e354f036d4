"""`kit list` and `kit train`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kaggle_kit.cli.app import app, quiet_transformers, say, setup_logging
from kaggle_kit.errors import KitError


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
