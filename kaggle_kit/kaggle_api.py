"""The only module that talks to Kaggle: a thin wrapper over the `kaggle` package's KaggleApi, for `kit data`
and `kit submit`, with where the credentials are, and each API failure as one KitError line.

`kaggle` is imported here and only when a real call runs: on import it prints an authentication notice and it
imports `six` without declaring it. Tests replace the KaggleApi object with an autospec of the installed
KaggleApi, so every call is bound to its real signature. KaggleCalls is the one interface of `kit submit`'s
calls: KaggleClient makes them, DryRunClient prints them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KitError

CREDENTIALS_HELP = ("create a token at https://www.kaggle.com/settings/api, then either set KAGGLE_API_TOKEN to it "
                    "or save it as ~/.kaggle/access_token, or (legacy API key) save its kaggle.json as "
                    "~/.kaggle/kaggle.json (chmod 600) or set KAGGLE_USERNAME and KAGGLE_KEY")
RULES_URL = "https://www.kaggle.com/competitions/{slug}/rules"


def kaggle_config_dir() -> Path:
    """Where the kaggle client looks for kaggle.json: $KAGGLE_CONFIG_DIR, else ~/.kaggle if it exists, else (on
    Linux) $XDG_CONFIG_HOME/kaggle or ~/.config/kaggle - the order of kaggle 2.x's KaggleApi.config_dir."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return legacy


def credentials_file() -> Path:
    return kaggle_config_dir() / "kaggle.json"


def credential_sources() -> list[str]:
    """The ways of signing in to Kaggle that are set up here, named but never read out: the ones the kaggle 2.x
    client (kagglesdk 0.1) accepts, in its order - an API token (KAGGLE_API_TOKEN, its value or a file it names;
    ~/.kaggle/access_token), a legacy API key (KAGGLE_USERNAME + KAGGLE_KEY, or kaggle.json), an OAuth login
    from `kaggle auth login` (~/.kaggle/credentials.json). Presence only: whether Kaggle accepts them shows
    on the first call."""
    home = Path.home() / ".kaggle"
    found = []
    if os.environ.get("KAGGLE_API_TOKEN"):
        found.append("KAGGLE_API_TOKEN")
    found += [f"~/.kaggle/{p.name}" for p in (home / "access_token", home / "access_token.txt") if _non_empty(p)]
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        found.append("KAGGLE_USERNAME/KAGGLE_KEY")
    if credentials_file().is_file():
        found.append(str(credentials_file()))
    if (home / "credentials.json").is_file():
        found.append("~/.kaggle/credentials.json (kaggle auth login)")
    return found


def _non_empty(path: Path) -> bool:
    try:
        return path.is_file() and bool(path.read_text(encoding="utf-8", errors="replace").strip())
    except OSError:
        return False


def have_credentials() -> bool:
    return bool(credential_sources())


def signed_in_api(extra: str) -> Any:
    """kaggle's KaggleApi, authenticated. Importing kaggle prints an authentication notice and authenticates
    once by itself: both go to a discarded stdout. `extra` names the kaggle-kit extra that installs kaggle."""
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError as err:
            raise KitError(f"the kaggle package is missing ({err}): pip install 'kaggle-kit[{extra}]'") from None
        api = KaggleApi()
        api.authenticate()
    return api


def connect(factory: Callable[[], Any]) -> Any:
    """The API `factory` makes, its failures as one line (for `kit data`)."""
    try:
        return factory()
    except KitError:
        raise
    except SystemExit:  # the client found no usable credentials: it printed its help and called exit(1)
        raise KitError(f"the Kaggle client accepts none of the credentials here: {CREDENTIALS_HELP}") from None
    except Exception as err:
        raise api_error(err, "signing in") from None


def is_offline(err: BaseException) -> bool:
    import socket

    import requests

    return isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                            socket.gaierror, TimeoutError))


def api_error(err: BaseException, what: str, slug: str | None = None) -> KitError:
    """One line for an exception the kaggle client raised while doing `what` (for `kit data`)."""
    status = http_status(err)
    if status == 401:
        return KitError(f"Kaggle refused the credentials (HTTP 401) while {what}: they are wrong or expired; "
                        f"{CREDENTIALS_HELP}")
    if status == 403 and slug:
        return KitError(f"Kaggle refused the download (HTTP 403): accept the competition's rules at "
                        f"{RULES_URL.format(slug=slug)} with the account of your credentials, then run this again")
    if status == 403:
        return KitError(f"Kaggle refused access (HTTP 403) while {what}: check that your account may read it")
    if status == 404:
        return KitError(f"Kaggle knows no such thing (HTTP 404) while {what}")
    if status is not None:
        return KitError(f"Kaggle answered HTTP {status} while {what}: {' '.join(str(err).split())[:200]}")
    if is_offline(err):
        return KitError(f"cannot reach Kaggle while {what}: no network ({type(err).__name__}); "
                        f"check the connection or proxy and run this again")
    return KitError(f"the Kaggle client failed while {what}: {type(err).__name__}: {' '.join(str(err).split())[:200]}")


def _status_name(status: Any) -> str:
    """Kaggle statuses arrive as enums (KernelWorkerStatus.COMPLETE) or strings; compare them as lowercase names."""
    return str(getattr(status, "name", status)).lower()


class KaggleCalls(ABC):
    """The Kaggle calls `kit submit` makes, with kit-level types: KaggleClient makes them, DryRunClient prints them.
    Both implement exactly these methods, with these signatures (tests/kaggle_kit/test_kaggle_api.py)."""

    @abstractmethod
    def dataset_exists(self, dataset_id: str) -> bool: ...

    @abstractmethod
    def dataset_create_new(self, folder: Path) -> None: ...

    @abstractmethod
    def dataset_create_version(self, folder: Path, notes: str) -> None: ...

    @abstractmethod
    def dataset_status(self, dataset_id: str) -> DatasetState:
        """The status name (lowercase DatabundleVersionStatus) and the current version number."""

    @abstractmethod
    def kernels_push(self, folder: Path) -> PushResult: ...

    @abstractmethod
    def kernels_status(self, kernel_id: str) -> tuple[str, str]: ...

    @abstractmethod
    def kernels_output(self, kernel_id: str, folder: Path) -> list[str]:
        """Download the latest version's output files (and its log, as <slug>.log) into `folder`."""

    @abstractmethod
    def competition_submit(self, competition: str, kernel_id: str, version: int, message: str,
                           output_file: str = "submission.csv") -> tuple[int, str]:
        """Submit a kernel version; returns the submission's ref and Kaggle's message."""

    @abstractmethod
    def submission_status(self, competition: str, ref: int) -> tuple[str, str]:
        """(status name, detail) of submission `ref`: lowercase SubmissionStatus, and the error description or the
        public score. ("not_listed", "") while Kaggle does not list it yet."""


class KaggleClient(KaggleCalls):
    """The Kaggle calls `kit submit` makes, with one-line errors."""

    def __init__(self, api: Any):
        self.api = api

    @classmethod
    def from_credentials(cls) -> KaggleClient:
        if not have_credentials():
            raise KitError(f"no Kaggle credentials: {CREDENTIALS_HELP}")
        try:
            api = signed_in_api(extra="submit")
        except KitError:
            raise
        except (Exception, SystemExit) as err:
            raise KitError(f"Kaggle authentication failed ({_one_line(err)}): {CREDENTIALS_HELP}") from None
        return cls(api)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, forbidden_hint: str = "", **kwargs: Any) -> Any:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return fn(*args, **kwargs)
        except KitError:
            raise
        except Exception as err:
            hint = f"; {forbidden_hint}" if forbidden_hint and http_status(err) in (401, 403) else ""
            raise KitError(f"Kaggle API {what} failed: {_one_line(err)}{hint}") from None

    def dataset_exists(self, dataset_id: str) -> bool:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.api.dataset_status(dataset_id)
            return True
        except Exception as err:
            if http_status(err) == 404:
                return False
            raise KitError(f"Kaggle API dataset_status({dataset_id!r}) failed: {_one_line(err)}") from None

    def dataset_create_new(self, folder: Path) -> None:
        response = self._call("dataset_create_new", self.api.dataset_create_new, folder=str(folder), public=False,
                              quiet=True, convert_to_csv=False, dir_mode="zip")
        _raise_on_dataset_error("dataset_create_new", response)

    def dataset_create_version(self, folder: Path, notes: str) -> None:
        response = self._call("dataset_create_version", self.api.dataset_create_version, folder=str(folder),
                              version_notes=notes, quiet=True, convert_to_csv=False, delete_old_versions=False,
                              dir_mode="zip")
        _raise_on_dataset_error("dataset_create_version", response)

    def dataset_status(self, dataset_id: str) -> DatasetState:
        """The status name (lowercase DatabundleVersionStatus) and the current version number."""
        text = self._call("dataset_status", self.api.dataset_status, dataset_id,
                          format="json(status,current_version_number)")
        try:
            payload = json.loads(text)
        except (TypeError, ValueError):
            raise KitError(f"Kaggle API dataset_status({dataset_id!r}) answered {text!r}, not JSON; "
                           f"kit submit needs kaggle>=2.2.4 (pip install -U 'kaggle-kit[submit]')") from None
        return DatasetState(_status_name(payload.get("status")), int(payload.get("current_version_number") or 0))

    def kernels_push(self, folder: Path) -> PushResult:
        response = self._call("kernels_push", self.api.kernels_push, str(folder))
        return PushResult(
            version=int(getattr(response, "version_number", 0) or 0), error=getattr(response, "error", "") or "",
            url=getattr(response, "url", "") or "",
            invalid_dataset_sources=list(getattr(response, "invalid_dataset_sources", []) or []),
            invalid_competition_sources=list(getattr(response, "invalid_competition_sources", []) or []),
            invalid_kernel_sources=list(getattr(response, "invalid_kernel_sources", []) or []),
            invalid_model_sources=list(getattr(response, "invalid_model_sources", []) or []),
            invalid_tags=list(getattr(response, "invalid_tags", []) or []))

    def kernels_status(self, kernel_id: str) -> tuple[str, str]:
        response = self._call("kernels_status", self.api.kernels_status, kernel_id)
        return _status_name(response.status), getattr(response, "failure_message", "") or ""

    def kernels_output(self, kernel_id: str, folder: Path) -> list[str]:
        """Download the latest version's output files (and its log, as <slug>.log) into `folder`."""
        files, _ = self._call("kernels_output", self.api.kernels_output, kernel_id, str(folder), force=True,
                              quiet=True)
        return [str(f) for f in files or []]

    def competition_submit(self, competition: str, kernel_id: str, version: int, message: str,
                           output_file: str = "submission.csv") -> tuple[int, str]:
        """Submit a kernel version; returns the submission's ref and Kaggle's message."""
        response = self._call("competition_submit_code", self.api.competition_submit_code, file_name=output_file,
                              message=message, competition=competition, kernel=kernel_id, kernel_version=version,
                              quiet=True, forbidden_hint=join_hint(competition))
        return int(getattr(response, "ref", 0) or 0), str(getattr(response, "message", "") or "")

    def submission_status(self, competition: str, ref: int) -> tuple[str, str]:
        """(status name, detail) of submission `ref`: lowercase SubmissionStatus, and the error description or the
        public score. ("not_listed", "") while Kaggle does not list it yet."""
        submissions = self._call("competition_submissions", self.api.competition_submissions, competition) or []
        match = next((s for s in submissions if s is not None and getattr(s, "ref", None) == ref), None)
        if match is None:
            return NOT_LISTED, ""
        status = _status_name(getattr(match, "status", "?"))
        if status == "error":
            return status, str(getattr(match, "error_description", "") or "")
        score = getattr(match, "public_score", None)
        return status, f"public score {score}" if score not in (None, "") else ""


NOT_LISTED = "not_listed"


def join_hint(competition: str) -> str:
    return (f"join the competition and accept its rules at https://www.kaggle.com/competitions/{competition}/rules "
            f"with the account of your API token, then run kit submit again")


@dataclass(frozen=True)
class DatasetState:
    status: str
    version: int


@dataclass(frozen=True)
class PushResult:
    """What `kernels_push` answered (kagglesdk ApiSaveKernelResponse), as plain values."""

    version: int
    error: str = ""
    url: str = ""
    invalid_dataset_sources: list[str] = field(default_factory=list)
    invalid_competition_sources: list[str] = field(default_factory=list)
    invalid_kernel_sources: list[str] = field(default_factory=list)
    invalid_model_sources: list[str] = field(default_factory=list)
    invalid_tags: list[str] = field(default_factory=list)


class DryRunClient(KaggleCalls):
    """Prints each call `kit submit` would make; assumes every step succeeds. Needs no credentials or network."""

    def __init__(self, log: Callable[[str], None] = print):
        self.log = log
        self._uploaded = False

    def _would(self, call: str) -> None:
        self.log(f"would call: api.{call}")

    def dataset_exists(self, dataset_id: str) -> bool:
        self._would(f"dataset_status({dataset_id!r})  # 404 -> dataset_create_new, else dataset_create_version")
        return False

    def dataset_create_new(self, folder: Path) -> None:
        self._would(f"dataset_create_new(folder={str(folder)!r}, public=False, quiet=True, convert_to_csv=False, "
                    f"dir_mode='zip')")
        self._uploaded = True

    def dataset_create_version(self, folder: Path, notes: str) -> None:
        self._would(f"dataset_create_version(folder={str(folder)!r}, version_notes={notes!r}, quiet=True, "
                    f"convert_to_csv=False, delete_old_versions=False, dir_mode='zip')")
        self._uploaded = True

    def dataset_status(self, dataset_id: str) -> DatasetState:
        self._would(f"dataset_status({dataset_id!r}, format='json(status,current_version_number)')  "
                    f"# until 'ready' at a new version")
        return DatasetState("ready", 1 if self._uploaded else 0)

    def kernels_push(self, folder: Path) -> PushResult:
        self._would(f"kernels_push({str(folder)!r})  # machine_shape etc. from kernel-metadata.json")
        return PushResult(version=1)

    def kernels_status(self, kernel_id: str) -> tuple[str, str]:
        self._would(f"kernels_status({kernel_id!r})  # until 'complete'")
        return "complete", ""

    def kernels_output(self, kernel_id: str, folder: Path) -> list[str]:
        self._would(f"kernels_output({kernel_id!r}, {str(folder)!r}, force=True, quiet=True)")
        return []

    def competition_submit(self, competition: str, kernel_id: str, version: int, message: str,
                           output_file: str = "submission.csv") -> tuple[int, str]:
        self._would(f"competition_submit_code(file_name={output_file!r}, message={message!r}, "
                    f"competition={competition!r}, kernel={kernel_id!r}, kernel_version=<pushed version>, quiet=True)")
        return 1, "dry run: nothing submitted"

    def submission_status(self, competition: str, ref: int) -> tuple[str, str]:
        self._would(f"competition_submissions({competition!r})  # until the new submission is 'complete'")
        return "complete", "dry run: no score"


def _raise_on_dataset_error(what: str, response: Any) -> None:
    """ApiCreateDatasetResponse: `error` set or `status` "error" is a failed upload (e.g. the title is taken)."""
    error = getattr(response, "error", None)
    if error or str(getattr(response, "status", "")).lower() == "error":
        raise KitError(f"Kaggle API {what} failed: {_one_line(error or 'status error')}")


def http_status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _one_line(err: Any) -> str:
    text = " ".join(str(err).split())
    offline_words = ("Max retries", "NameResolution", "Failed to establish", "Network is unreachable")
    answered = http_status(err) is not None  # an HTTP error is an answer from kaggle.com, not a network problem
    if not answered and (isinstance(err, OSError) or "Connection" in type(err).__name__
                         or any(w in text for w in offline_words)):
        return f"cannot reach kaggle.com, check the network ({type(err).__name__})"
    return text[:300] or type(err).__name__
