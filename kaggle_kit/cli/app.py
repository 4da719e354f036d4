"""The `kit` app and what every command shares: one status line, logging, and errors as one line with exit code 2."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

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
