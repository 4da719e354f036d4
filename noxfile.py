"""Developer sessions. `nox -s tests` is the CI command (see README and .ci/run)."""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

# constraints-dev.txt pins torch to the CPU wheel that is already on the CI disk.
INSTALL = ("-c", "constraints-dev.txt")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and end-to-end tests on CPU (tiny random-weight models, real ELL data from ../shared/data)."""
    session.install(*INSTALL, "-e", ".[dev]")
    session.run("pytest", "--durations=15", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "kaggle_kit", "competitions", "tests", "benchmarks", "noxfile.py")


@nox.session
def quick(session: nox.Session) -> None:
    """The README's main job: `kit train ell --preset quick` on the embedded default model."""
    session.install(*INSTALL, "-e", ".[default-model]")
    session.run("kit", "train", "ell", "--preset", "quick", "--data", "../shared/data/ell", *session.posargs)


@nox.session
def benchmark(session: nox.Session) -> None:
    """Throughput of the kit against a padded-to-max_len loop, printed as ratios."""
    session.install(*INSTALL, "-e", ".[default-model]")
    session.run("python", "benchmarks/throughput.py", *session.posargs)
