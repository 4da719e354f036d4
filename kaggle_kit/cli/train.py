"""`kit list` and `kit train`."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from kaggle_kit.cli.app import app, quiet_transformers, say, setup_logging
from kaggle_kit.errors import Interrupted, KitError


@app.command("list")
def list_competitions() -> None:
    """List the competition plugins kaggle-kit knows (built-in and installed through entry points); a plugin that
    fails to load is one `broken:` line with its entry point and error."""
    from kaggle_kit.registry import all_competitions, broken_plugins

    table = Table(title="competitions")
    for column in ("name", "title", "kaggle slug", "task", "metric", "targets", "default loss"):
        table.add_column(column)
    for comp in all_competitions().values():
        table.add_row(comp.name, comp.title, comp.kaggle_slug, comp.task, comp.metric.name,
                      ", ".join(comp.schema.target_names), comp.default_loss)
    console = Console()
    console.print(table)
    for plugin in broken_plugins().values():
        console.print(f"broken: {plugin.line()}", soft_wrap=True, highlight=False, markup=False)


def train(competition: str, config: Path | None, out: Path | None, resume: bool, seeds: str | None,
          **settings) -> None:
    """K-fold fine-tuning: OOF predictions, CV report, fold weights and plots in a run folder.

    Settings layer as defaults < --preset < --config FILE < flags. With --resume the run's own recorded settings
    are used; only flags that cannot change results (device, threads, eval batch size, data folder, a subset of
    the run's folds) may be given.
    """
    from kaggle_kit import config as config_mod
    from kaggle_kit.registry import get_competition
    from kaggle_kit.runs.folder import RunDir, default_run_path, latest_incomplete_run

    comp = get_competition(competition)
    flags = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items() if v is not None}
    if seeds is not None:
        train_seeds(comp, config, out, resume, seeds, flags)
        return
    runs_root = Path("runs")
    if resume:
        run_path = out or latest_incomplete_run(runs_root, comp.name)
        if run_path is None:
            raise KitError(f"--resume: no unfinished run under {runs_root / comp.name}/; pass --out RUN_DIR")
        recorded = RunDir(Path(run_path)).load_config()
        if recorded.competition != comp.name:
            raise KitError(f"--resume: {run_path} is a run of {recorded.competition!r}, not of {comp.name!r}")
        requested: dict = {}
        for _, values in config_mod.layers(comp.name, comp.presets, None, config, flags):
            requested.update(values)
        cfg = recorded.model_copy(update=config_mod.resume_changes(recorded, requested))
        cfg = config_mod.build(cfg.model_dump(), "--resume")
    else:
        cfg = config_mod.resolve(comp.name, comp.presets, None, config, flags)
    from kaggle_kit.models.model import check_model_dir, default_model_path
    from kaggle_kit.train import distributed

    model_path = check_model_dir(cfg.model) if cfg.model else default_model_path()
    run_path = Path(run_path if resume else (out or default_run_path(runs_root, comp.name, model_path)))
    if cfg.nproc_per_node > 1 and not distributed.launched_by_torchrun():
        launch_torchrun(comp.name, cfg, config, run_path, resume, flags)
        return
    setup_logging()
    quiet_transformers()
    dist = distributed.setup(cfg.device)
    distributed.quiet_other_ranks(dist)
    from kaggle_kit.train.pipeline import train as run_training

    try:
        run_path = dist.broadcast(run_path)  # the default folder name has the time in it: rank 0's counts
        result = run_training(cfg, run_path, resume=resume, dist=dist)
    except KeyboardInterrupt:
        if (run_path / "run_config.json").is_file():
            raise Interrupted(f"interrupted: finished folds are saved in {run_path}; continue with "
                              f"`kit train {comp.name} --resume --out {run_path}`") from None
        raise Interrupted("interrupted before the run started; nothing was written") from None
    finally:
        distributed.teardown()
    if result.cv is not None:
        print_cv(result.cv, comp.schema.target_names)
        say(f"run folder: {result.run.path}")


def launch_torchrun(competition: str, cfg, config: Path | None, run_path: Path, resume: bool, flags: dict) -> None:
    """`kit train ... --nproc-per-node N`: the same command under torchrun on this machine (one process per GPU of
    --devices, or N CPU processes sharing --threads), into the run folder chosen here.

    torchrun's launcher runs in this process (its agent starts and watches the ranks): a failed rank has printed
    its own `error:` line, so only a rank that died without one (killed, crashed) is reported here.
    """
    import os

    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    from kaggle_kit import config as config_mod
    from kaggle_kit.train.distributed import torchrun_command

    n = cfg.nproc_per_node
    flags = dict(flags)
    if cfg.devices is not None:
        if len(cfg.devices) < n:
            raise KitError(f"--nproc-per-node {n} with --devices {','.join(map(str, cfg.devices))}: one GPU per "
                           f"process is needed")
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, cfg.devices))
    flags["threads"] = max(1, (cfg.threads or torch.get_num_threads()) // n)
    os.environ["OMP_NUM_THREADS"] = str(flags["threads"])
    argv = ["train", competition, "--out", str(run_path), *(["--config", str(config)] if config else []),
            *(["--resume"] if resume else [])]
    for name, value in flags.items():
        option = config_mod.option_name(name)
        if isinstance(value, bool):
            argv.append(option if value else f"--no-{option[2:]}")
        else:
            argv += [option, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    command = torchrun_command(n, argv)
    say(f"launching {n} processes: torchrun {' '.join(command[3:])}")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun(get_args_parser().parse_args(command[3:]))
    except ChildFailedError as err:
        codes = {failure.local_rank: failure.exitcode for failure in err.failures.values()}
        if 2 in codes.values() or 130 in codes.values():
            raise SystemExit(max(codes.values())) from None
        raise KitError("data-parallel training failed: " + ", ".join(
            f"rank {rank} {'was killed by signal ' + str(-code) if code < 0 else f'exited with code {code}'}"
            for rank, code in sorted(codes.items())) + f"; finished folds are kept in {run_path}") from None


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise KitError(f"--seeds {text!r}: expected whole numbers separated by commas, e.g. 42,43,44") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise KitError(f"--seeds {text!r}: give at least two different seeds >= 0, e.g. 42,43,44")
    return seeds


def train_seeds(comp, config: Path | None, out: Path | None, resume: bool, text: str, flags: dict) -> None:
    """One run per seed, each its own run folder (<out>-s<seed>), all on the same folds (--fold-seed, by default
    the first seed) so their OOF predictions blend row for row; then a table of their CVs."""
    from kaggle_kit import config as config_mod
    from kaggle_kit.models.model import check_model_dir, default_model_path
    from kaggle_kit.runs.folder import default_run_path
    from kaggle_kit.train.pipeline import train as run_training

    if resume:
        raise KitError("--seeds with --resume: resume each seed's run by its folder (--resume --out RUN-s<seed>)")
    if "seed" in flags:
        raise KitError("--seeds and --seed: give one of them")
    seeds = parse_seeds(text)
    fold_seed = flags.get("fold_seed", seeds[0])
    configs = [config_mod.resolve(comp.name, comp.presets, None, config, {**flags, "seed": s, "fold_seed": fold_seed})
               for s in seeds]
    from kaggle_kit.train import distributed

    if configs[0].nproc_per_node > 1 or distributed.launched_by_torchrun():
        raise KitError(f"--seeds under torchrun/--nproc-per-node: launch one data-parallel run per seed instead "
                       f"(`kit train {comp.name} --seed S --fold-seed {fold_seed} --nproc-per-node N --out RUN-sS`), "
                       f"or use --fold-workers with --seeds")
    model_path = check_model_dir(configs[0].model) if configs[0].model else default_model_path()
    base = Path(out or default_run_path(Path("runs"), comp.name, model_path))
    paths = [base.with_name(f"{base.name}-s{s}") for s in seeds]
    for path in paths:
        if (path / "run_config.json").exists():
            raise KitError(f"--out {path}: already holds a run; choose another --out for --seeds")
    setup_logging()
    quiet_transformers()
    results = []
    for seed, cfg, path in zip(seeds, configs, paths, strict=True):
        say(f"seed {seed} of {','.join(map(str, seeds))}: {path}")
        try:
            result = run_training(cfg, path)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted during seed {seed}: finished folds are saved in {path}; continue with "
                              f"`kit train {comp.name} --resume --out {path}`, then the remaining seeds") from None
        print_cv(result.cv, comp.schema.target_names)
        results.append((seed, path, result.cv))
    print_seeds(results, comp.schema.target_names, comp.name)


def print_seeds(results: list[tuple[int, Path, dict]], targets: list[str], competition: str) -> None:
    """One row per seed's run and their mean and spread: how much of a difference is seed noise (per-target scores
    are in each run's own table above)."""
    metric = results[0][2]["metric"]
    table = Table(title=f"--seeds: CV {metric} per run (same folds)")
    for column in ("seed", "run", metric):
        table.add_column(column, justify="left" if column == "run" else "right")
    for seed, path, cv in results:
        table.add_row(str(seed), path.name, f"{cv['score']:.4f}")
    scores = np.array([cv["score"] for _, _, cv in results])
    table.add_row("mean", f"std {scores.std(ddof=1):.4f}", f"{scores.mean():.4f}", style="bold")
    Console().print(table)
    say(f"blend them: kit ensemble {competition} " + " ".join(f"--run {p}" for _, p, _ in results))


def _train_signature() -> inspect.Signature:
    """`kit train`'s parameters: the few that steer the command, then one option per TrainConfig setting."""
    from kaggle_kit import config as config_mod

    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("competition", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                          default=typer.Argument(..., help="Competition plugin name (see `kit list`), e.g. ell.")),
        inspect.Parameter("config", keyword, annotation=Path | None, default=typer.Option(
            None, "--config", metavar="FILE", help="YAML/JSON file of settings (same names as the options, "
                                                   "e.g. max_len: 512); flags override it.")),
        inspect.Parameter("out", keyword, annotation=Path | None, default=typer.Option(
            None, "--out", metavar="DIR", help="Run folder [default: runs/<competition>/<time>-<model>].")),
        inspect.Parameter("resume", keyword, annotation=bool, default=typer.Option(
            False, "--resume", help="Continue the run in --out (or the latest unfinished one) with its own "
                                    "settings; skip its finished folds.")),
        inspect.Parameter("seeds", keyword, annotation=str | None, default=typer.Option(
            None, "--seeds", metavar="LIST", help="Train the same settings once per seed, e.g. 42,43,44: separate "
                                                  "runs <out>-s42, <out>-s43, ... on the same folds (--fold-seed, "
                                                  "default the first seed), then a table of their CVs.")),
    ]
    for name, kind, default, declaration, metavar in config_mod.cli_parameters():
        params.append(inspect.Parameter(name, keyword, annotation=kind | None, default=typer.Option(
            default, declaration, metavar=metavar, help=config_mod.help_text(name), show_default=False)))
    return inspect.Signature(params)


train.__signature__ = _train_signature()
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
app.command()(train)


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
    for t in targets if cv["per_target"] else []:
        table.add_row(t, *(f"{f['per_target'][t]:.4f}" for _, f in folds), f"{cv['per_target'][t]:.4f}",
                      f"{base['per_target'][t]:.4f}")
    table.add_row("overall", *(f"{f['score']:.4f}" for _, f in folds), f"{cv['score']:.4f}", f"{base['score']:.4f}",
                  style="bold")
    Console().print(table)
    post = cv.get("postprocess")
    if post:
        crossfit = post["score_after_crossfit"]
        say(f"{post['name']} fitted on the OOF predictions: {cv['metric']} {post['score_before']:.4f} -> "
            f"{post['score_after']:.4f} on the rows it was fitted on"
            + (f", {crossfit:.4f} cross-fitted (fitted on the other folds)" if crossfit is not None else "")
            + f"; applied by kit predict and the bundle ({post['file']})")
