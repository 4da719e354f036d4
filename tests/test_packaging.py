"""What kaggle_kit imports is what pyproject.toml declares: a module-level import must be a core dependency (it
runs on `import kaggle_kit...` wherever the kit is installed: the notebook's image venv installs only the declared
ones), a deferred import (inside a function) a core or optional dependency, or one that a declared package brings
and the kit uses through it (named below)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
# imported only where the package that brings them is in use: click (typer's), PIL (matplotlib's), requests (kaggle's)
BROUGHT_BY_DECLARED = {"click": "typer", "pillow": "matplotlib", "requests": "kaggle"}
# modules that only commands needing an extra import (`kit bundle`, `kit simulate`, `kit remote` check for it first)
EXTRA_ONLY_MODULES = {"kaggle_kit/ship/notebook.py": "nbformat", "kaggle_kit/remote/notebook.py": "nbformat"}


def declared() -> tuple[set[str], set[str]]:
    """Core and optional dependencies, as the installed kaggle-kit's metadata lists pyproject.toml's (the tests
    run on an install of this checkout)."""
    core, extras = set(), set()
    for line in requires("kaggle-kit") or []:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name == "kaggle-kit":
            continue
        (extras if requirement.marker and "extra" in str(requirement.marker) else core).add(name)
    return core, extras


def imports() -> dict[str, set[tuple[str, bool]]]:
    """Top-level module name -> {(file, at module level)} over kaggle_kit's own imports of other packages."""
    found: dict[str, set[tuple[str, bool]]] = {}
    for path in sorted((ROOT / "kaggle_kit").rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            module_level = id(node) in top or _under_type_checking(tree, node)
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names and root not in ("kaggle_kit", "competitions"):
                    found.setdefault(root, set()).add((str(path.relative_to(ROOT)), module_level and
                                                       not _under_type_checking(tree, node)))
    return found


def _under_type_checking(tree: ast.Module, target: ast.AST) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if any(child is target for child in ast.walk(node)):
                return True
    return False


def test_every_imported_package_is_declared():
    core, extras = declared()
    distributions = {k: {canonicalize_name(d) for d in v} for k, v in packages_distributions().items()}
    problems = []
    for module, places in sorted(imports().items()):
        names = distributions.get(module, {canonicalize_name(re.sub(r"_", "-", module))})
        at_top = sorted(f for f, level in places if level and EXTRA_ONLY_MODULES.get(f) != module)
        if at_top and not names & core:
            problems.append(f"{module} ({', '.join(names)}) is imported at module level in {at_top[0]} but is not "
                            f"a core dependency")
        elif not names & (core | extras) and not any(BROUGHT_BY_DECLARED.get(n) for n in names):
            problems.append(f"{module} ({', '.join(names)}) is imported in {sorted(places)[0][0]} but declared "
                            f"nowhere")
    assert problems == []
