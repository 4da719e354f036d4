"""The house's layers, declared once, and every import that climbs from a lower layer up to a higher one.

Each module belongs to the layer of the longest name in LAYERS that prefixes it. An import may reach its own
layer or any below it; one that reaches a higher layer is listed with file:line. Imports inside functions count
too (a lazy import is still a dependency).

    python tools/layers.py            # list the upward imports and their count
    python tools/layers.py --max 3    # exit 1 when there are more than 3
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("kaggle_kit", "competitions")

# Low to high. A layer may import from itself and from the layers before it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("kaggle_kit", "kaggle_kit.errors", "kaggle_kit.fileio", "kaggle_kit.startup", "kaggle_kit.terminal")),
    ("config", ("kaggle_kit.config",)),
    ("device", ("kaggle_kit.accelerators", "kaggle_kit.device")),
    ("tasks", ("kaggle_kit.tasks",)),
    ("competition", ("kaggle_kit.competition",)),
    ("folds", ("kaggle_kit.data.folds",)),  # what plugins declare their splits with
    ("plugins", ("competitions",)),
    ("registry", ("kaggle_kit.registry",)),  # finds the plugins
    ("kaggle_api", ("kaggle_kit.kaggle_api",)),
    ("data", ("kaggle_kit.data",)),
    ("models", ("kaggle_kit.models",)),
    ("runs", ("kaggle_kit.runs",)),  # the run record: folder, status, monitor, tracker, plots
    ("predict", ("kaggle_kit.predict",)),
    ("train", ("kaggle_kit.train",)),
    ("pseudo_label", ("kaggle_kit.predict.pseudo_label",)),  # predicts the rows that training reads back
    ("ship", ("kaggle_kit.ship",)),
    ("remote", ("kaggle_kit.remote",)),  # kit remote: trains on Kaggle with ship's wheels and notebook machinery
    ("views", ("kaggle_kit.views",)),  # what `kit runs` shows: listing, diff, report
    ("doctor", ("kaggle_kit.doctor",)),
    ("cli", ("kaggle_kit.cli", "kaggle_kit.__main__")),
]


@dataclass(frozen=True)
class Upward:
    path: str
    line: int
    importer: str
    imported: str
    from_layer: str
    to_layer: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} ({self.from_layer}) imports {self.imported} ({self.to_layer})"


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> tuple[int, str] | None:
    best: tuple[int, int, str] | None = None  # (prefix length, rank, layer name)
    for rank, (name, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank, name)
    return None if best is None else (best[1], best[2])


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for each import, once per module a statement names; `from a import b` names a.b when b is a
    module, else a."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add((node.lineno, full if full in known else base))
    return sorted(found)


def upward_imports(root: Path, packages: tuple[str, ...] = PACKAGES,
                   layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> list[Upward]:
    files = sorted(f for package in packages for f in (root / package).rglob("*.py"))
    known = {module_name(f, root) for f in files}
    upward = []
    for path in files:
        module = module_name(path, root)
        own = layer_of(module, layers)
        if own is None:
            raise SystemExit(f"{path.relative_to(root)}: {module} is in no layer; add it to LAYERS in {__file__}")
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target in imported_modules(tree, module, path.name == "__init__.py", known):
            theirs = layer_of(target, layers)
            if theirs is not None and theirs[0] > own[0]:
                upward.append(Upward(str(path.relative_to(root)), line, module, target, own[1], theirs[1]))
    return upward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=None, help="exit 1 when there are more upward imports than this")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository root (default: this one)")
    args = parser.parse_args(argv)
    upward = upward_imports(args.root)
    for item in upward:
        print(item)
    print(f"{len(upward)} upward imports")
    if args.max is not None and len(upward) > args.max:
        print(f"more than --max {args.max}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
