"""What the user sees on the terminal, for every command and every worker process: one status line, logging, and
errors as one line with exit code 2. Low in the house so train/ and predict/ use it without importing the CLI."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from kaggle_kit.errors import Interrupted, KitError

console = Console(stderr=True)
NOISY_LOGGERS = ("transformers", "httpx", "urllib3", "matplotlib", "filelock")


def setup_logging() -> None:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_transformers() -> None:
    from kaggle_kit.startup import frozen_imports

    with frozen_imports():
        import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def say(message: str) -> None:
    """One status line on stderr, unwrapped and without rich markup (paths and lists print as they are)."""
    console.print(message, soft_wrap=True, highlight=False, markup=False)


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


def run_command(command: Callable[[], object]) -> None:
    """Run `command` (the `kit` app, or a worker process's job). Errors the user can act on end as one `error:`
    line with exit code 2; Ctrl-C as one line with exit code 130."""
    try:
        code = command()
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
