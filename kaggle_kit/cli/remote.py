"""`kit remote train|status|pull`: train on Kaggle's GPUs from here, and bring the run folder home."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from kaggle_kit.cli.app import app, say
from kaggle_kit.errors import KitError

remote_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Train on Kaggle's GPUs: push a training notebook, follow it, pull the run folder.")
app.add_typer(remote_app, name="remote")


def _client(dry_run: bool):
    from kaggle_kit.kaggle_api import DryRunClient, KaggleClient

    return DryRunClient(log=say) if dry_run else KaggleClient.from_credentials()


def _waiter(poll_seconds: float, wait_hours: float):
    from kaggle_kit.ship.submit import Waiter

    return Waiter(poll_seconds, wait_hours * 3600, log=say)


def train(competition: str, config: Path | None, resume: str | None, accelerator: str, model_source: str,
          owner: str | None, image_packages: Path | None, remote_dir: Path, dry_run: bool, poll_seconds: float,
          wait_hours: float, **settings) -> None:
    """Upload the kit (reused when Kaggle has it), push a notebook that runs `kit train` with these settings on
    Kaggle's accelerator, internet off, and print its URL and version."""
    from kaggle_kit import config as config_mod
    from kaggle_kit.registry import get_competition
    from kaggle_kit.remote.flow import push_training
    from kaggle_kit.ship.bundle import kaggle_username, pip_download
    from kaggle_kit.ship.image import load_image_packages

    comp = get_competition(competition)
    flags = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items() if v is not None}
    if resume and (flags or config):
        raise KitError("--resume continues the pushed run with its own settings: drop the other settings")
    cfg = config_mod.resolve(comp.name, comp.presets, None, config, flags)
    client = _client(dry_run)
    owner = owner or kaggle_username() or ("dry-run-user" if dry_run else None)
    if not owner:
        raise KitError("--owner: no Kaggle username given and none found in KAGGLE_USERNAME or ~/.kaggle/kaggle.json")
    push_training(comp, cfg, client, owner, accelerator, model_source, load_image_packages(image_packages),
                  pip_download, _waiter(poll_seconds, wait_hours), remote_dir, log=say, resume=resume, save=not dry_run)


def _train_signature() -> inspect.Signature:
    """The command's own options, then one option per `kit train` setting (declared once, in config.py)."""
    from kaggle_kit import config as config_mod

    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [
        ("config", Path | None, typer.Option(None, "--config", metavar="FILE",
                                              help="YAML/JSON file of kit train settings; flags override it.")),
        ("resume", str | None, typer.Option(None, "--resume", metavar="RUN",
                                            help="Push a new version of RUN's notebook that trains its missing "
                                                 "folds (pull it first).")),
        ("accelerator", str, typer.Option("t4x2", help="Kaggle accelerator: t4x2 (Kaggle's free GPU), none (CPU), "
                                                        "l4, l4x1, a100, h100, rtx-pro-6000 where offered.")),
        ("model_source", str, typer.Option(
            "copy", "--model-source", metavar="SOURCE",
            help="Where the notebook gets --model: copy (into the upload), dataset:OWNER/SLUG or "
                 "kaggle-model:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION; found there by its identity.")),
        ("owner", str | None, typer.Option(None, help="Kaggle username [default: KAGGLE_USERNAME or kaggle.json].")),
        ("image_packages", Path | None, typer.Option(
            None, help="The Kaggle image list the wheels are checked against [default: the kit's "
                       "kaggle_image.txt].")),
        ("remote_dir", Path, typer.Option(Path("remote"), help="Where uploads, notebooks and push records go.")),
        ("dry_run", bool, typer.Option(False, "--dry-run", help="Build everything, print the calls, change nothing.")),
        ("poll_seconds", float, typer.Option(30.0, help="Seconds between status checks of the upload.")),
        ("wait_hours", float, typer.Option(2.0, help="Give up waiting for the upload to be processed after this.")),
    ]
    params = [inspect.Parameter("competition", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                default=typer.Argument(..., help="Competition plugin name, e.g. ell."))]
    params += [inspect.Parameter(name, keyword, annotation=kind, default=default) for name, kind, default in own]
    for name, kind, default, declaration, metavar in config_mod.cli_parameters():
        if name in ("data", "stop_after_hours"):  # the notebook sets them: the attached data, the session's time
            continue
        params.append(inspect.Parameter(name, keyword, annotation=kind | None, default=typer.Option(
            default, declaration, metavar=metavar, help=config_mod.help_text(name), show_default=False)))
    return inspect.Signature(params)


train.__signature__ = _train_signature()
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
remote_app.command("train")(train)


@remote_app.command()
def status(
    name: str = typer.Argument(None, help="A pushed run or kernel [default: every pushed one]."),
    remote_dir: Path = typer.Option(Path("remote"), help="Where push records are."),
) -> None:
    """One line per pushed run: its kernel's state on Kaggle (complete, running, error, cancelled, quota)."""
    from kaggle_kit.remote.flow import all_records, find_record, status_line

    records = [find_record(remote_dir, name)] if name else all_records(remote_dir)
    if not records:
        raise KitError(f"kit remote status: nothing pushed yet (no records under {remote_dir}/)")
    client = _client(False)
    for record in records:
        say(status_line(record, client))


@remote_app.command()
def pull(
    name: str = typer.Argument(..., help="A pushed run (its name or runs/ folder) or its kernel (owner/slug)."),
    remote_dir: Path = typer.Option(Path("remote"), help="Where push records are."),
    runs_dir: Path = typer.Option(Path("runs"), help="The runs/ folder the run lands in, as runs/<comp>/<run>."),
    poll_seconds: float = typer.Option(60.0, help="Seconds between status checks."),
    wait_hours: float = typer.Option(0.0, help="Wait this long for a running notebook to end (0: check once)."),
    data: Path = typer.Option(None, metavar="DIR", help="The competition's data here: the run points at it when its "
                                                        "train.csv is the one trained on [default: data/<comp>]."),
) -> None:
    """Wait for the notebook to end, fetch its output, check it (file list and sha256s, manifest, the settings
    asked) and move the run folder into runs/<competition>/, marked as trained on Kaggle."""
    from kaggle_kit.remote.flow import find_record, pull_run

    record = find_record(remote_dir, name)
    pull_run(record, _client(False), _waiter(poll_seconds, wait_hours), remote_dir, runs_dir, log=say,
             data_dir=data)
