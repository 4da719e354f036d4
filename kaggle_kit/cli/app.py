"""The `kit` app and what every command shares: one status line, logging, and errors as one line with exit code 2."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from kaggle_kit.errors import Interrupted, KitError

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


def folds_option():
    """`--folds`, declared once for `kit predict` and `kit bundle`."""
    return typer.Option(None, "--folds", metavar="LIST",
                        help="Use only these finished folds of the one --run, e.g. 0,2 [default: every finished fold; "
                             "a missing or changed fold file is refused]. The CV printed and bundled is recomputed "
                             "on these folds' OOF rows.")


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


def require_module(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise KitError(f"{module} is not installed: pip install 'kaggle-kit[{extra}]'")


def os_error_line(err: OSError) -> str:
    """An OS error as one line naming the path and what to do (read-only folder, full disk, permissions)."""
    path = err.filename or "a file"
    reason = (err.strerror or str(err)).rstrip(".").lower()
    hint = {
        errno.ENOSPC: "free some disk space; finished work is kept and a run continues with --resume",
        errno.EDQUOT: "free some disk space; finished work is kept and a run continues with --resume",
        errno.EROFS: "choose a folder on a writable disk (--out)",
        errno.EACCES: "choose a folder you can write to (--out), or fix its permissions",
        errno.EPERM: "choose a folder you can write to (--out), or fix its permissions",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
    }.get(err.errno, "")
    return f"{path}: {reason}{'; ' + hint if hint else ''}"


def main(command: Callable[[], object] | None = None) -> None:
    """Run `kit` (or `command`, a worker process's job, with the same error handling). Errors the user can act on
    end as one `error:` line with exit code 2; Ctrl-C as one line with exit code 130. Click runs in non-standalone
    mode so no handler of its own swallows an interrupt first."""
    try:
        code = command() if command is not None else app(standalone_mode=False)
    except KitError as err:
        _error(str(err))
        raise SystemExit(2) from None
    except OSError as err:
        _error(os_error_line(err))
        raise SystemExit(2) from None
    except Interrupted as err:
        say(str(err))
        raise SystemExit(130) from None
    except (KeyboardInterrupt, typer.Abort):
        say("interrupted")
        raise SystemExit(130) from None
    except _click_exception() as err:
        err.show()
        raise SystemExit(err.exit_code) from None
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _click_exception() -> type[Exception]:
    """Usage errors (an unknown option, a missing argument): recent typer vendors click, older ones use it."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException
    return ClickException


def _error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
