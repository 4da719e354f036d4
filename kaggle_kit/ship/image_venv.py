"""`kit simulate --image`: a cached virtual environment of the Kaggle image's Python and pinned package versions.

It holds what the kit, its plugin and the notebook's kernel import, each at the version the image list pins (pip
resolves the whole set against every pin of the list), and nothing else; the bundle's wheels are installed by the
notebook itself into a throwaway layer on top, so the cache is never changed by a run.

torch is the exception the machine forces: the image list is the CPU image's (torch X+cpu), and PyPI serves
only the CUDA build of X for Linux (the GPU image's own X+cuNNN), whose import needs its nvidia-* libraries.
So the venv gets PyPI's build of the same torch version with those libraries (about 3.3 GB of downloads, 7 GB
on disk); on a machine without a GPU it runs the same CPU kernels. What differs from the list is printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kaggle_kit.errors import KitError
from kaggle_kit.ship.image import ImagePackages

# The GPU-only packages the CPU image list may carry (a stray nccl) or lack: torch pins its own.
CUDA_PREFIXES = ("nvidia-", "cuda-", "triton")
READY = "kit-image-venv.json"
KERNEL_PACKAGES = ("ipykernel", "pip")  # the notebook runs in an IPython kernel and calls %pip
PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def cache_root() -> Path:
    """KIT_CACHE_DIR, else $XDG_CACHE_HOME/kaggle-kit or ~/.cache/kaggle-kit; image venvs live in image-venvs/."""
    if os.environ.get("KIT_CACHE_DIR"):
        return Path(os.environ["KIT_CACHE_DIR"]) / "image-venvs"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kaggle-kit" / "image-venvs"


def find_python(version: str, explicit: Path | None = None) -> Path:
    """An interpreter of the image's Python X.Y: --python, then pythonX.Y on PATH, then pyenv's versions."""
    candidates: list[Path] = [explicit] if explicit else []
    if not explicit:
        on_path = shutil.which(f"python{version}")
        if on_path:
            candidates.append(Path(on_path))
        pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
        if pyenv.is_dir():
            candidates += sorted((p / "bin" / "python" for p in pyenv.glob(f"{version}.*")), reverse=True)
    for candidate in candidates:
        result = subprocess.run([str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True) if candidate.is_file() else None
        if result is not None and result.returncode == 0 and result.stdout.strip() == version:
            return candidate
        if explicit:
            raise KitError(f"--python {explicit}: not a Python {version} interpreter (the image's version)")
    raise KitError(f"--image needs a Python {version} interpreter (the Kaggle image's): none on PATH as "
                   f"python{version} or under pyenv; install one (e.g. `pyenv install {version}`) or pass --python")


def public_version(version: str) -> str:
    """`2.10.0+cpu` -> `2.10.0`: PyPI serves no local versions."""
    return version.split("+", 1)[0]


def image_pins(names: list[str], image: ImagePackages) -> list[str]:
    """`name==version` for each name the image has, in the order given."""
    return [f"{name}=={public_version(image.versions[canonicalize_name(name)])}" for name in names
            if canonicalize_name(name) in image.versions]


def constraints_text(image: ImagePackages) -> str:
    """Every pin of the image list as a pip constraint, minus the CUDA packages torch pins itself."""
    lines = [f"{name}=={public_version(version)}" for name, version in sorted(image.versions.items())
             if not name.startswith(CUDA_PREFIXES)]
    return "\n".join(lines) + "\n"


def venv_key(python_version: str, pins: list[str], constraints: str) -> str:
    digest = hashlib.sha256(json.dumps([python_version, sorted(pins), constraints]).encode()).hexdigest()
    return digest[:16]


def ensure_image_venv(image: ImagePackages, requirements: list[Requirement], python: Path,
                      log: Callable[[str], None] = print, root: Path | None = None) -> Path:
    """The site-packages folder of the cached venv for `requirements` at the image's pins; built on first use."""
    names = list(dict.fromkeys([*(r.name for r in requirements), *KERNEL_PACKAGES]))
    pins = image_pins(names, image)
    absent = [n for n in names if canonicalize_name(n) not in image.versions]
    constraints = constraints_text(image)
    full_version = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    venv = (root or cache_root()) / f"py{full_version}-{venv_key(full_version, pins, constraints)}"
    marker = venv / READY
    if marker.is_file():
        info = json.loads(marker.read_text())
        log(f"image venv: {venv} (cached, built {info['built']}, {info['disk_mb']:,} MB)")
        return Path(info["site_packages"])
    if venv.exists():  # an interrupted build
        shutil.rmtree(venv)
    if absent:
        log(f"image venv: not on the image list, so left to the bundle's wheels: {', '.join(absent)}")
    torch = [p for p in pins if p.startswith("torch==")]
    if torch and "+" in image.versions.get("torch", ""):
        log(f"image venv: NOTE torch: the image list pins {image.versions['torch']} (the CPU image); PyPI has only "
            f"the CUDA build of {public_version(image.versions['torch'])} for Linux (the GPU image's "
            f"{image.gpu_torch or 'CUDA build'}), so the venv gets that with its nvidia-* libraries (~3.3 GB "
            f"download, once); without a GPU it runs the same CPU kernels")
    log(f"image venv: building {venv} with Python {full_version}: {' '.join(pins)} (+ their dependencies at the "
        f"image's pins); first use downloads several GB")
    started = time.monotonic()
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, capture_output=True)
    venv_python = venv / "bin" / "python"
    (venv / "image-constraints.txt").write_text(constraints)
    cmd = [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", "--no-cache-dir",
           "--only-binary=:all:", "--progress-bar", "off", "-c", str(venv / "image-constraints.txt"), *pins]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-3:]) or "no output"
        shutil.rmtree(venv, ignore_errors=True)
        raise KitError(f"image venv: pip could not install the image's pins for Python {full_version}: {tail}")
    sizes = re.findall(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)", result.stdout)
    downloaded = sum(float(n) * {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit] for n, unit in sizes)
    installed = json.loads(subprocess.run([str(venv_python), "-m", "pip", "list", "--format=json",
                                           "--disable-pip-version-check"], capture_output=True, text=True,
                                          check=True).stdout)
    differs, extra, mismatched = [], [], []
    for package in installed:
        name = canonicalize_name(package["name"])
        expected = image.versions.get(name)
        if expected is None or name.startswith(CUDA_PREFIXES):
            extra.append(f"{package['name']} {package['version']}")
        elif public_version(expected) != package["version"]:
            differs.append(f"{package['name']} {package['version']} (list: {expected})")
            mismatched.append((package["name"], package["version"], expected))
    cuda = [e for e in extra if canonicalize_name(e.split()[0]).startswith(CUDA_PREFIXES)]
    other = [e for e in extra if e not in cuda]
    if differs:
        from kaggle_kit.ship.image import explain_differences, version_difference

        found = [version_difference(*names) for names in mismatched]
        for line in explain_differences([d for d in found if d is not None], "the image venv (what pip installed)",
                                        f"the image list {image.path.name}", "the simulation tests the venv's "
                                        "version, not the image's; fix the pin in the list and rebuild"):
            log(f"image venv: {line}")
    if other:
        log(f"image venv: WARNING installed though not on the image list: {', '.join(other)}")
    if cuda:
        log(f"image venv: torch's CUDA libraries, at torch's own pins: {len(cuda)} packages")
    site_packages = subprocess.run([str(venv_python), "-c", PURELIB], capture_output=True, text=True,
                                   check=True).stdout.strip()
    disk_mb = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) // 2**20
    info = {"built": time.strftime("%Y-%m-%d %H:%M"), "python": full_version, "pins": pins,
            "seconds": round(time.monotonic() - started), "download_mb": round(downloaded), "disk_mb": disk_mb,
            "differs": differs, "not_on_list": other, "cuda_packages": cuda, "site_packages": site_packages,
            "image_list": str(image.path), "image_date": image.date}
    marker.write_text(json.dumps(info, indent=1))
    log(f"image venv: built in {info['seconds']} s, {info['download_mb']:,} MB downloaded, {disk_mb:,} MB on disk")
    return Path(site_packages)
