"""`kit data COMP`: the competition's files from the Kaggle API, checked against the plugin, written whole or not.

The files go to a staging folder beside the target (`data/.ell.download/`), are unpacked and checked there, and
only then renamed into place: a failure leaves the target as it was. A folder that already holds every file the
plugin needs, valid, is not downloaded again. Files already in the target are never overwritten.

Every failure the user can act on is one line: no credentials, credentials refused (401), competition rules not
accepted (403), unknown competition (404), no network, a download cut off (the partial archive is kept and
resumed by the kaggle client on the next run), files that do not match the plugin's schema.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kaggle_kit.competition import Competition, InputContext
from kaggle_kit.errors import KitError
from kaggle_kit.kaggle_api import CREDENTIALS_HELP, api_error, connect, credential_sources, http_status, signed_in_api

Log = Callable[[str], None]


@dataclass
class DataResult:
    folder: Path
    downloaded: list[str] = field(default_factory=list)  # files added to the folder by this call
    rows: dict[str, int] = field(default_factory=dict)


def missing_files(comp: Competition, folder: Path) -> list[str]:
    """The data files `folder` lacks; an extra file also counts as there under one of its alternative names."""
    alternatives = {extra.name: extra.alternatives for extra in comp.extra_files}
    return [name for name in comp.data_files()
            if not any((folder / n).is_file() for n in (name, *alternatives.get(name, ())))]


def folder_problem(comp: Competition, folder: Path) -> str | None:
    """Why `folder` is not a complete data folder for `comp`, or None: every file of comp.data_files() present,
    train.csv and test.csv valid for the schema, sample_submission.csv with the submission columns, and the
    plugin's input builder able to turn every row into model input (USPPPM: a CPC title for every context)."""
    missing = missing_files(comp, folder)
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        check_files(comp, folder)
    except KitError as err:
        return str(err)
    return None


def check_files(comp: Competition, folder: Path) -> dict[str, int]:
    """Validate a folder that holds every data file; return the row count of each CSV."""
    from kaggle_kit.data.load import _require_columns, find_extra_files, load_test, load_train, read_csv

    train = load_train(comp, folder)
    test = load_test(comp, folder / "test.csv")
    sample_path = folder / "sample_submission.csv"
    sample = read_csv(sample_path)
    _require_columns(sample, sample_path, comp.schema.submission_columns())
    files = find_extra_files(comp, folder, {})
    for frame, split in ((train, "train"), (test, "test")):  # per-row files: train/ for train.csv, test/ for test.csv
        comp.build_inputs(frame, InputContext(sep_token="[SEP]", input_format=comp.input_formats[0], seed=0,
                                              data_dir=folder, files=files, split=split))
    return {"train.csv": len(train), "test.csv": len(test), "sample_submission.csv": len(sample)}


def default_out(comp: Competition) -> Path:
    return Path("data") / comp.name


def staging_dir(out: Path) -> Path:
    """Beside the target, so the final rename stays on one filesystem; hidden, so nothing mistakes it for data."""
    return out.parent / f".{out.name}.download"


def download_data(comp: Competition, out: Path | None = None, api_factory: Callable[[], Any] | None = None,
                  log: Log = print) -> DataResult:
    """Make `out` (default data/<comp>/) a complete data folder for `comp`; see the module docstring."""
    out = Path(out) if out else default_out(comp)
    if out.exists() and not out.is_dir():
        raise KitError(f"--out {out}: is a file, not a folder")
    missing = missing_files(comp, out)
    if not missing:
        problem = folder_problem(comp, out)
        if problem:
            raise KitError(f"{out}/ holds every file but they do not match the {comp.name} schema ({problem}); "
                           f"move the folder away and run `kit data {comp.name}` again")
        rows = check_files(comp, out)
        log(f"{out}/ is complete ({_describe(rows)}): nothing to download")
        return DataResult(out, [], rows)

    if api_factory is None and not credential_sources():
        raise KitError(f"no Kaggle credentials for `kit data {comp.name}`: {CREDENTIALS_HELP}")
    api = connect(api_factory or partial(signed_in_api, extra="kaggle"))
    sources = _sources_for(comp, missing)
    staging = staging_dir(out)
    with _staging(staging, out) as unpacked:
        for source in sources:
            source.fetch(api, staging, unpacked)
        for existing in out.iterdir() if out.is_dir() else ():  # check the folder as it will be: what is there stays
            if existing.is_file():
                (unpacked / existing.name).unlink(missing_ok=True)
                _link_or_copy(existing, unpacked / existing.name)
        absent = missing_files(comp, unpacked)
        if absent:
            raise KitError(f"the Kaggle download for {comp.name} holds no {', '.join(absent)}; nothing was written "
                           f"to {out}/")
        try:
            rows = check_files(comp, unpacked)
        except KitError as err:
            raise KitError(f"the downloaded files do not match the {comp.name} schema ({err}); nothing was written "
                           f"to {out}/") from None
        added = _move_into_place(unpacked, out)
    log(f"wrote {out}/: {', '.join(added)} ({_describe(rows)}); next: kit train {comp.name}")
    return DataResult(out, added, rows)


def _describe(rows: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,} rows" for name, count in rows.items())


# ---- what to download ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _CompetitionFiles:
    slug: str

    @property
    def archive(self) -> str:
        return f"{self.slug}.zip"

    def fetch(self, api: Any, staging: Path, unpacked: Path) -> None:
        _download(lambda: api.competition_download_files(self.slug, path=str(staging), quiet=_quiet()),
                  staging / self.archive, f"downloading the competition files of {self.slug}", self.slug)
        _unzip(staging / self.archive, unpacked)


@dataclass(frozen=True)
class _DatasetFile:
    dataset: str
    file: str
    save_as: str

    @property
    def archive(self) -> str:
        return f"{self.dataset.split('/')[-1]}.zip"

    def fetch(self, api: Any, staging: Path, unpacked: Path) -> None:
        folder = staging / "datasets"
        _download(lambda: api.dataset_download_files(self.dataset, path=str(folder), quiet=_quiet(), unzip=False),
                  folder / self.archive, f"downloading the dataset {self.dataset}")
        extracted = staging / "datasets" / self.dataset.replace("/", "--")
        _unzip(folder / self.archive, extracted)
        found = sorted(extracted.rglob(self.file))
        if not found:
            raise KitError(f"the Kaggle dataset {self.dataset} holds no {self.file}; nothing was written")
        os.replace(found[0], unpacked / self.save_as)


def _quiet() -> bool:
    """The kaggle client's progress bar (stderr) only on a terminal, where it redraws one line; in a log or a
    pipe its frames would be lines of their own."""
    return not sys.stderr.isatty()


def _sources_for(comp: Competition, missing: list[str]) -> list[Any]:
    """The competition archive when one of its files is missing; the source dataset of each missing extra file."""
    extra = {e.name: e.source for e in comp.extra_files if e.source is not None}
    sources: list[Any] = []
    if any(name not in extra for name in missing):
        sources.append(_CompetitionFiles(comp.kaggle_slug))
    sources += [_DatasetFile(extra[name].dataset, extra[name].file, name) for name in missing if name in extra]
    return sources


def _download(call: Callable[[], Any], archive: Path, what: str, slug: str | None = None) -> None:
    """Run a kaggle download call. A failure after part of the archive arrived is a cut-off download: the kaggle
    client (which already retried) leaves the part with a `.kaggle-partial` marker and resumes it on the next
    call with the same path, so the staging folder is kept for it."""
    size_before = archive.stat().st_size if archive.is_file() else 0
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the client's own status prints; its bar is on stderr
            call()
    except KitError:
        raise
    except Exception as err:
        if http_status(err) is None and archive.is_file() and archive.stat().st_size > size_before:
            got = f"{archive.stat().st_size / 1e3:,.0f} kB"
            if _resumable(archive):
                raise KitError(f"the download was cut off while {what} ({_one_line(err)}) after {got}; the part is "
                               f"kept in {archive.parent}/: run the same command again to resume it") from None
            raise KitError(f"the download was cut off while {what} ({_one_line(err)}) after {got} and cannot be "
                           f"resumed (removed); run the same command again") from None
        raise api_error(err, what, slug) from None
    if not archive.is_file():
        raise KitError(f"the Kaggle client wrote no {archive.name} while {what}")


def _resumable(archive: Path) -> bool:
    """The kaggle client's marker that the part on disk belongs to the current remote file."""
    return Path(f"{archive}.kaggle-partial").is_file()


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"


def _unzip(archive: Path, dest: Path) -> None:
    """Extract every member into `dest`, refusing names that would land outside it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            root = dest.resolve()
            for member in zf.infolist():
                target = (dest / member.filename).resolve()
                if root not in target.parents and target != root:
                    raise KitError(f"{archive}: member {member.filename!r} would be written outside {dest}/")
            dest.mkdir(parents=True, exist_ok=True)
            zf.extractall(dest)
    except zipfile.BadZipFile:
        archive.unlink()
        raise KitError(f"{archive.name} from Kaggle is not a valid zip archive (removed); run the same command "
                       f"again") from None


# ---- staging and the final rename ------------------------------------------------------------------------------

@contextlib.contextmanager
def _staging(staging: Path, out: Path) -> Iterator[Path]:
    """A staging folder beside `out`, removed when the call ends - with every folder this call created, so a
    failed `kit data` leaves nothing behind - unless it holds a resumable part of a cut-off download."""
    created = [p for p in (staging.parent, *staging.parent.parents) if not p.exists()]
    unpacked = staging / "unpacked"
    if unpacked.exists():
        shutil.rmtree(unpacked)
    unpacked.mkdir(parents=True)
    succeeded = False
    try:
        yield unpacked
        succeeded = True
    finally:
        if not succeeded and any(staging.rglob("*.kaggle-partial")):
            shutil.rmtree(unpacked, ignore_errors=True)
        else:
            shutil.rmtree(staging, ignore_errors=True)
            for folder in created:  # innermost first
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _move_into_place(unpacked: Path, out: Path) -> list[str]:
    """A new target gets the whole checked folder in one rename; an existing one gets only the files it lacks,
    each renamed in (never overwriting what is there)."""
    names = sorted(p.name for p in unpacked.iterdir() if p.is_file())
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if out.exists():
            out.rmdir()
        os.replace(unpacked, out)
        return names
    added = []
    for name in names:
        if not (out / name).exists():
            os.replace(unpacked / name, out / name)
            added.append(name)
    return added
