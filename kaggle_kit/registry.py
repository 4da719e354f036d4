"""Find competition plugins: built-ins under `competitions/` plus third-party entry points.

Each plugin loads on its own: one that fails to import or declares a bad `Competition` is recorded as broken (one
line naming its entry point and the error; `kit list` shows it, `kit doctor` fails on it) and every other plugin
stays usable.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sysconfig
import traceback
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

import kaggle_kit
from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError

ENTRY_POINT_GROUP = "kaggle_kit.competitions"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be loaded, as the user sees it instead of its traceback."""

    name: str  # the entry point's name; a built-in's module name
    source: str  # what it points at: my_package.comp:COMPETITION, or competitions.foo
    error: str  # ImportError: cannot import name 'AUCC' from 'kaggle_kit.tasks.metrics' (at .../comp.py:3)

    def line(self) -> str:
        return f"{self.name} ({self.source}): {self.error}"


_broken: dict[str, BrokenPlugin] = {}
_warned: set[str] = set()


def describe_error(err: BaseException) -> str:
    """`Type: message` on one line, and where in the plugin's own code it happened (the last frame outside
    kaggle_kit and the standard library) when there is such a frame."""
    message = " ".join(str(err).split())
    text = f"{type(err).__name__}: {message}" if message else type(err).__name__
    if isinstance(err, KitError):
        text = message
    own = (str(Path(kaggle_kit.__file__).parent), sysconfig.get_paths()["stdlib"])
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<") and not f.filename.startswith(own)]
    if frames:
        text += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return text


def _checked(comp: object, attribute: str) -> Competition:
    if not isinstance(comp, Competition):
        raise KitError(f"{attribute} is a {type(comp).__name__}, not a kaggle_kit.competition.Competition")
    return comp


@cache
def all_competitions() -> dict[str, Competition]:
    """Every working plugin module's `COMPETITION`, keyed by name; the broken ones go to `broken_plugins()`.
    Built-ins need no installed metadata."""
    found: dict[str, Competition] = {}
    broken: dict[str, BrokenPlugin] = {}
    tried: set[str] = set()
    import competitions

    for module_info in pkgutil.iter_modules(competitions.__path__):
        source = f"competitions.{module_info.name}"
        tried.add(source)
        try:
            comp = getattr(importlib.import_module(source), "COMPETITION", None)
            if comp is None:  # a helper module, not a plugin
                continue
            comp = _checked(comp, "COMPETITION")
        except Exception as err:  # one plugin's error never takes down the others
            broken[module_info.name] = BrokenPlugin(module_info.name, source, describe_error(err))
            continue
        found[comp.name] = comp
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in found or entry.module in tried:  # kaggle-kit's own entry points name the built-ins
            continue
        try:
            comp = _checked(entry.load(), entry.attr or entry.module)
        except Exception as err:  # one plugin's error never takes down the others
            broken[entry.name] = BrokenPlugin(entry.name, entry.value, describe_error(err))
            continue
        found[comp.name] = comp
    _broken.clear()
    _broken.update({name: plugin for name, plugin in broken.items() if name not in found})
    return dict(sorted(found.items()))


def broken_plugins() -> dict[str, BrokenPlugin]:
    """The plugins that failed to load, by entry point name (a built-in: its module name)."""
    all_competitions()
    return dict(sorted(_broken.items()))


def warn_broken(skip: str | None = None) -> None:
    """One warning line per broken plugin, once per process: a command for another competition still runs."""
    for name, plugin in broken_plugins().items():
        if name != skip and plugin.line() not in _warned:
            _warned.add(plugin.line())
            log.warning(f"warning: broken competition plugin left out: {plugin.line()}")


def get_competition(name: str) -> Competition:
    comps = all_competitions()
    broken = broken_plugins()
    if name not in comps and name in broken:
        plugin = broken[name]
        raise KitError(f"competition plugin {plugin.name} ({plugin.source}) is broken: {plugin.error}")
    warn_broken(skip=name)
    if name not in comps:
        also = f"; broken: {', '.join(broken)}" if broken else ""
        raise KitError(f"unknown competition {name!r}; known: {', '.join(comps) or 'none'}{also} (see `kit list`)")
    return comps[name]
