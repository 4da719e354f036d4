"""The `kit` command line: one module per group of commands, all registered on one Typer app.

Importing a module registers its commands; the import order is the order of `kit --help` (pipeline order).
"""

from kaggle_kit.startup import frozen_imports

with frozen_imports():
    # isort: off
    from kaggle_kit.cli import data  # noqa: F401
    from kaggle_kit.cli import pretrain  # noqa: F401
    from kaggle_kit.cli import train  # noqa: F401
    from kaggle_kit.cli import runs  # noqa: F401
    from kaggle_kit.cli import predict  # noqa: F401
    from kaggle_kit.cli import ensemble  # noqa: F401
    from kaggle_kit.cli import pseudo  # noqa: F401
    from kaggle_kit.cli import ship  # noqa: F401
    from kaggle_kit.cli import remote  # noqa: F401
    from kaggle_kit.cli import doctor  # noqa: F401
    # isort: on
    from kaggle_kit.cli.app import app, main

__all__ = ["app", "main"]
