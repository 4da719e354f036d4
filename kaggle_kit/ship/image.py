"""The Kaggle image's package list: what `kit bundle` assumes the notebook will find, and `kit image-list`.

The list is a `pip freeze` of the image with a header of `# key: value` lines: `python` (required), `date`,
`source`, `gpu-torch` (the GPU image's torch build, which a CPU-image freeze cannot show).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import write_text

DEFAULT_IMAGE_LIST = Path(__file__).parent / "kaggle_image.txt"
HEADER_LINE = re.compile(r"^#\s*([a-z][a-z0-9-]*):\s*(.*)$")
HEADER_KEYS = ("date", "python", "source", "gpu-torch")


@dataclass(frozen=True)
class ImagePackages:
    """The Kaggle image's Python version and package versions, from a dated list."""

    path: Path
    python: str
    date: str
    versions: dict[str, str]
    header: dict[str, str] = field(default_factory=dict)

    @property
    def gpu_torch(self) -> str | None:
        value = self.header.get("gpu-torch", "").split()
        return value[0] if value else None


def load_image_packages(path: str | Path | None = None) -> ImagePackages:
    """Parse `name==version` lines plus the `# key: value` header (`# python: X.Y` is required)."""
    path = Path(path) if path else DEFAULT_IMAGE_LIST
    if not path.is_file():
        raise KitError(f"--image-packages {path}: file not found")
    header: dict[str, str] = {}
    versions: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            match = HEADER_LINE.match(line)
            if match:
                header.setdefault(match.group(1), match.group(2).strip())
            continue
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise KitError(f"{path} line {number}: expected `name==version`, got {line!r}")
        versions[canonicalize_name(name.strip())] = version.strip()
    if not re.fullmatch(r"3\.\d+", header.get("python", "")):
        raise KitError(f"{path}: missing header line `# python: 3.X` (the image's Python version)")
    return ImagePackages(path, header["python"], header.get("date", "undated"), versions, header)


def missing_from_image(requirements: list[Requirement], image: ImagePackages) -> list[Requirement]:
    """Requirements the image lacks or has at a version outside the requirement's range."""
    missing = []
    for req in requirements:
        version = image.versions.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            missing.append(req)
    return missing


@dataclass(frozen=True)
class FreezeList:
    """A `pip freeze` read for `kit image-list`: pins, the Python version it names, and the lines it skipped."""

    pins: dict[str, str]
    python: str | None
    skipped: list[str]


def read_freeze(path: Path) -> FreezeList:
    """`name==version` pins of a freeze; `name @ url` and `-e` lines carry no version and are skipped."""
    if not path.is_file():
        raise KitError(f"{path}: file not found (save `pip freeze` in a Kaggle notebook, e.g. the "
                       f"kaggle_image_freeze.txt a kit notebook writes)")
    pins: dict[str, str] = {}
    skipped: list[str] = []
    python = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = HEADER_LINE.match(line)
            if match and match.group(1) == "python":
                python = ".".join(match.group(2).strip().split(".")[:2])
            continue
        name, sep, version = line.partition("==")
        if sep and name.strip() and version.strip() and " " not in name.strip():
            pins[name.strip()] = version.strip()
        elif " @ " in line or line.startswith("-e"):
            skipped.append(line.split(" @ ")[0].removeprefix("-e").strip())
        else:
            raise KitError(f"{path} line {number}: not a pip freeze line: {line!r}")
    if not pins:
        raise KitError(f"{path}: no `name==version` lines; is it a `pip freeze`?")
    return FreezeList(pins, python, skipped)


def write_image_list(freeze: FreezeList, out: Path, python: str | None, date: str | None, source: str,
                     gpu_torch: str | None) -> ImagePackages:
    """The image list `kit bundle` reads, from a freeze: header first, then the pins sorted by name."""
    python = python or freeze.python
    if not python or not re.fullmatch(r"3\.\d+", python):
        raise KitError("--python: the freeze does not say which Python the image runs (give --python 3.X)")
    date = date or dt.date.today().isoformat()
    try:
        dt.date.fromisoformat(date)
    except ValueError:
        raise KitError(f"--date {date!r}: expected YYYY-MM-DD") from None
    lines = ["# Packages on Kaggle's Python notebook image, as `kit bundle` assumes them (written by kit image-list).",
             "# Override with --image-packages FILE; refresh with `kit image-list FREEZE`.",
             f"# date: {date}", f"# python: {python}", f"# source: {source}"]
    if gpu_torch:
        lines.append(f"# gpu-torch: {gpu_torch}")
    if freeze.skipped:
        lines.append(f"# skipped (no version in the freeze): {', '.join(sorted(freeze.skipped))}")
    lines += [f"{name}=={version}" for name, version in sorted(freeze.pins.items(), key=lambda kv: kv[0].lower())]
    write_text(out, "\n".join(lines) + "\n")
    return load_image_packages(out)


# Packages whose files a run saves (tokenizer.json, config.json) and the notebook reads back with its own version.
SAVED_WITH = ("transformers", "tokenizers")


@dataclass(frozen=True)
class VersionDifference:
    """One package at two versions, `ours` (this machine, or what was installed) and `theirs` (an image list, or
    what a bundle assumed), and whether the difference can change what the notebook does."""

    name: str
    ours: str
    theirs: str
    matters: bool
    why: str

    def describe(self) -> str:
        return f"{self.name} {self.ours} vs {self.theirs} ({self.why})"


def _release(text: str) -> tuple[int, ...]:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).release + (0, 0)
    except InvalidVersion:
        return ()


def version_difference(name: str, ours: str, theirs: str, ours_saves: bool = True) -> VersionDifference | None:
    """Whether `ours` and `theirs` differ in a way that matters: a patch release never does (same file formats
    and APIs); transformers or tokenizers newer on our side than on theirs does when ours saves the files theirs
    reads (`ours_saves`: the tokenizer and config a run writes); a different major version of anything does;
    other minor differences do not (kaggle-kit supports the ranges its requirements declare). None when the
    releases are the same (a local build tag like +cpu aside)."""
    name = canonicalize_name(name)
    a, b = _release(ours.split("+")[0]), _release(theirs.split("+")[0])
    if a and a == b:
        return None
    if a[:2] == b[:2] and a and b:
        return VersionDifference(name, ours, theirs, False, "patch release: does not matter")
    if ours_saves and name in SAVED_WITH and a > b:
        return VersionDifference(name, ours, theirs, True, "newer on the saving side: the older version must read "
                                                           "the tokenizer and config files it writes")
    if a[:1] != b[:1]:
        return VersionDifference(name, ours, theirs, True, "major version: APIs and file formats may differ")
    return VersionDifference(name, ours, theirs, False, "minor version: within kaggle-kit's supported range")


def version_differences(ours: dict[str, str], theirs: dict[str, str], ours_saves: bool = True
                        ) -> list[VersionDifference]:
    """The differences between two name -> version maps, for the names both have, by name."""
    theirs = {canonicalize_name(k): v for k, v in theirs.items()}
    found = [version_difference(k, v, theirs[canonicalize_name(k)], ours_saves) for k, v in sorted(ours.items())
             if canonicalize_name(k) in theirs]
    return [d for d in found if d is not None]


def explain_differences(differences: list[VersionDifference], ours: str, theirs: str, remedy: str) -> list[str]:
    """Log lines: one warning per difference that matters, naming whose versions differ and what to do; one line
    for all that do not."""
    lines = [f"warning: {ours} has {d.name} {d.ours}, {theirs} {d.theirs}: {d.why}; {remedy}"
             for d in differences if d.matters]
    harmless = [f"{d.name} {d.ours} vs {d.theirs}" for d in differences if not d.matters]
    if harmless:
        lines.append(f"versions: {ours} vs {theirs} differ only in ways that do not matter (patch or minor "
                     f"releases): {', '.join(harmless)}")
    return lines


def installed_here(names) -> dict[str, str]:
    """This interpreter's versions of `names`, for those installed."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
