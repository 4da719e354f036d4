"""The `kit` app: its commands share kaggle_kit/terminal.py's status line, logging and one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import typer

from kaggle_kit.errors import KitError
from kaggle_kit.terminal import (
    console,
    os_error_line,
    quiet_transformers,
    require_module,
    run_command,
    say,
    setup_logging,
)

__all__ = ["app", "console", "main", "os_error_line", "parse_weights", "quiet_transformers", "require_module", "say",
           "setup_logging"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Train, bundle and submit transformer models for Kaggle NLP code competitions, offline and reproducibly.",
)


def parse_weights(weights: str | None) -> list[float] | None:
    if not weights:
        return None
    try:
        return [float(w) for w in weights.split(",")]
    except ValueError:
        raise KitError(f"--weights {weights!r}: expected comma-separated numbers, e.g. 0.6,0.4") from None


def folds_option():
    """`--folds`, declared once for `kit predict` and `kit bundle`."""
    return typer.Option(None, "--folds", metavar="LIST",
                        help="Use only these finished folds of the one --run, e.g. 0,2 [default: every finished fold; "
                             "a missing or changed fold file is refused]. The CV printed and bundled is recomputed "
                             "on these folds' OOF rows.")


def ttt_option():
    """`--ttt`, declared once for `kit predict` and `kit bundle`; its keys are TestTimeConfig's fields."""
    from kaggle_kit.predict.test_time import spec_help

    return typer.Option(None, "--ttt", metavar="KEY=VALUE,...",
                        help="Test-time training before each fold predicts, e.g. steps=20,source=examples "
                             "[default: off]. Keys: " + spec_help())


def parse_folds(folds: str | None, runs: int, ensemble: bool) -> list[list[int]] | None:
    """`--folds 0,2` as the fold list of the one run it may name."""
    if folds is None:
        return None
    try:
        numbers = [int(f) for f in folds.split(",")]
    except ValueError:
        raise KitError(f"--folds {folds!r}: expected comma-separated fold numbers, e.g. 0,2") from None
    if len(set(numbers)) != len(numbers):
        raise KitError(f"--folds {folds}: a fold is named twice")
    if ensemble or runs != 1:
        raise KitError(f"--folds {folds}: picks the folds of one --run (an ensemble file names its own folds)")
    return [numbers]


def main(command: Callable[[], object] | None = None) -> None:
    """Run `kit` (or `command`, a worker process's job, with the same error handling). Click runs in
    non-standalone mode so no handler of its own swallows an interrupt first."""
    run_command(command if command is not None else partial(app, standalone_mode=False))
