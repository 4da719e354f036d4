"""Find competition plugins: built-ins under `competitions/` plus third-party entry points."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points

from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError

ENTRY_POINT_GROUP = "kaggle_kit.competitions"


@cache
def all_competitions() -> dict[str, Competition]:
    """Every plugin module's `COMPETITION`, keyed by name. Built-ins need no installed metadata."""
    found: dict[str, Competition] = {}
    import competitions

    for module_info in pkgutil.iter_modules(competitions.__path__):
        module = importlib.import_module(f"competitions.{module_info.name}")
        comp = getattr(module, "COMPETITION", None)
        if isinstance(comp, Competition):
            found[comp.name] = comp
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found:
            continue
        comp = entry.load()
        if not isinstance(comp, Competition):
            raise KitError(f"entry point {entry.name!r} ({entry.value}) is not a kaggle_kit Competition")
        found[comp.name] = comp
    return dict(sorted(found.items()))


def get_competition(name: str) -> Competition:
    comps = all_competitions()
    if name not in comps:
        raise KitError(f"unknown competition {name!r}; known: {', '.join(comps) or 'none'} (see `kit list`)")
    return comps[name]
