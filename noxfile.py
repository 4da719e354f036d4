"""Developer sessions. `nox -s tests` is the CI command (see README and .ci/run)."""

import os
import shutil

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# constraints-dev.txt pins torch to the CPU wheel that is already on the CI disk.
INSTALL = ("-c", "constraints-dev.txt")


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests on CPU (tiny random-weight models, real ELL data from ../shared/data).

    `kit report` is tested in a real headless Chromium: installed here from Debian's packages when missing and
    running as root (a clean CI machine), and required (KIT_REQUIRE_BROWSER) so that test never skips under nox.
    """
    session.install(*INSTALL, "-e", ".[dev]")
    ensure_chromium(session)
    session.run("pytest", "--durations=15", *session.posargs, env={"KIT_REQUIRE_BROWSER": "1"})


def ensure_chromium(session: nox.Session) -> None:
    if any(shutil.which(name) for name in BROWSERS):
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        session.warn("chromium is not installed and this is not a root Debian/Ubuntu machine: install chromium, "
                     "or the report's browser test fails")
        return
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=apt_env)
    session.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", external=True, env=apt_env)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "kaggle_kit", "competitions", "tests", "benchmarks", "noxfile.py")


@nox.session
def quick(session: nox.Session) -> None:
    """The README's first command: `kit train ell --preset quick` with the embedded default model, on data/ell/
    if it is there, else on the ELL sample embedded in the package. Extra arguments go to kit train."""
    session.install(*INSTALL, "-e", ".[all]")
    session.run("kit", "train", "ell", "--preset", "quick", *session.posargs)


@nox.session
def benchmark(session: nox.Session) -> None:
    """Throughput of the kit against a padded-to-max_len loop, printed as ratios."""
    session.install(*INSTALL, "-e", ".[default-model]")
    session.run("python", "benchmarks/throughput.py", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """GPU acceptance: every CUDA path of the kit in one table (benchmarks/gpu_acceptance.py; README "Measured
    (GPU)"). Runs in the current interpreter, which must already hold the kit (offline: install it from the folder
    `python benchmarks/gpu_acceptance.py --prepare gpu_carry` writes); without CUDA it runs its dry mode."""
    session.run("python", "benchmarks/gpu_acceptance.py", *session.posargs, external=True)


@nox.session(name="simulate_image")
def simulate_image(session: nox.Session) -> None:
    """The bundle of a small real run, its notebook run in a venv of the Kaggle image's Python 3.12 and pinned
    versions, network cut, in the new and the old /kaggle/input layout; each must equal `kit predict` within 1e-4.

    Not in the default sessions: the first run downloads about 4.3 GB (PyPI's torch 2.10.0 is the CUDA build, with
    its nvidia-* libraries) into ~/.cache/kaggle-kit/image-venvs (7.5 GB) and trains 4-5 min; later runs reuse both.
    Needs a Python 3.12 interpreter (python3.12 on PATH or pyenv) and ../shared/data/ell.
    """
    from pathlib import Path

    session.install(*INSTALL, "-e", ".[default-model,simulate]")
    data = "../shared/data/ell"
    work = Path(session.create_tmp())
    run = work / "run-quick400"
    if not (run / "cv.json").is_file():
        if run.exists():
            session.run("rm", "-rf", str(run), external=True)
        session.run("kit", "train", "ell", "--preset", "quick", "--threads", "1", "--max-train-samples", "400",
                    "--data", data, "--out", str(run))
    session.run("kit", "bundle", "ell", "--run", str(run), "--owner", "kit-tester", "--slug", "ell-kit-image-check",
                "--out", str(work / "bundles"), "--no-check")
    for layout in ("new", "old"):
        session.run("kit", "simulate", "--bundle", str(work / "bundles" / "ell-kit-image-check"), "--data", data,
                    "--image", "--layout", layout, "--output", str(work / f"submission-{layout}.csv"), *session.posargs)
