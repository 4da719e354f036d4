"""The only module that talks to Kaggle: a thin wrapper over the `kaggle` package's KaggleApi.

`kaggle` is imported here and only when a real submission runs: on import it prints an authentication notice
and it imports `six` without declaring it. Every API failure becomes one KitError line. Tests replace the
KaggleApi object with a recording fake, so the calls are checked at this boundary.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaggle_kit.errors import KitError

CREDENTIALS_HELP = ("put your API token in ~/.kaggle/kaggle.json (kaggle.com > Settings > API > Create New Token) "
                    "or set KAGGLE_USERNAME and KAGGLE_KEY")


def credentials_file() -> Path:
    return Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"


def have_credentials() -> bool:
    both_env = bool(os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))
    return both_env or credentials_file().is_file() or bool(os.environ.get("KAGGLE_API_TOKEN"))


def _status_name(status: Any) -> str:
    """Kaggle statuses arrive as enums (KernelWorkerStatus.COMPLETE) or strings; compare them as lowercase names."""
    return str(getattr(status, "name", status)).lower()


class KaggleClient:
    """The Kaggle calls `kit submit` makes, with kit-level types and one-line errors."""

    def __init__(self, api: Any):
        self.api = api

    @classmethod
    def from_credentials(cls) -> KaggleClient:
        if not have_credentials():
            raise KitError(f"no Kaggle credentials: {CREDENTIALS_HELP}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                from kaggle.api.kaggle_api_extended import KaggleApi

                api = KaggleApi()
                api.authenticate()
        except ImportError as err:
            raise KitError(f"the kaggle package is missing ({err}): pip install 'kaggle-kit[submit]'") from None
        except (Exception, SystemExit) as err:
            raise KitError(f"Kaggle authentication failed ({_one_line(err)}): {CREDENTIALS_HELP}") from None
        return cls(api)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return fn(*args, **kwargs)
        except KitError:
            raise
        except Exception as err:
            raise KitError(f"Kaggle API {what} failed: {_one_line(err)}") from None

    def dataset_exists(self, dataset_id: str) -> bool:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.api.dataset_status(dataset_id)
            return True
        except Exception as err:
            if _http_status(err) == 404:
                return False
            raise KitError(f"Kaggle API dataset_status({dataset_id!r}) failed: {_one_line(err)}") from None

    def dataset_create_new(self, folder: Path) -> None:
        response = self._call("dataset_create_new", self.api.dataset_create_new, folder=str(folder), public=False,
                              quiet=True, convert_to_csv=False, dir_mode="zip")
        _raise_on_error("dataset_create_new", response)

    def dataset_create_version(self, folder: Path, notes: str) -> None:
        response = self._call("dataset_create_version", self.api.dataset_create_version, folder=str(folder),
                              version_notes=notes, quiet=True, convert_to_csv=False, dir_mode="zip")
        _raise_on_error("dataset_create_version", response)

    def dataset_status(self, dataset_id: str) -> str:
        return _status_name(self._call("dataset_status", self.api.dataset_status, dataset_id))

    def kernels_push(self, folder: Path) -> int:
        response = self._call("kernels_push", self.api.kernels_push, str(folder))
        _raise_on_error("kernels_push", response)
        return int(response.version_number)

    def kernels_status(self, kernel_id: str) -> tuple[str, str]:
        response = self._call("kernels_status", self.api.kernels_status, kernel_id)
        return _status_name(response.status), getattr(response, "failure_message", "") or ""

    def competition_submit(self, competition: str, kernel_id: str, version: int, message: str,
                           output_file: str = "submission.csv") -> str:
        response = self._call("competition_submit_code", self.api.competition_submit_code, file_name=output_file,
                              message=message, competition=competition, kernel=kernel_id, kernel_version=version,
                              quiet=True)
        return str(getattr(response, "message", "") or "submitted")

    def latest_submission(self, competition: str) -> str:
        submissions = self._call("competition_submissions", self.api.competition_submissions, competition) or []
        if not submissions:
            return "no submission listed yet"
        latest = submissions[0]
        score = getattr(latest, "public_score", None)
        return (f"{getattr(latest, 'description', '')!r}: status {_status_name(getattr(latest, 'status', '?'))}"
                + (f", public score {score}" if score not in (None, "") else ""))


class DryRunClient:
    """Prints each call `kit submit` would make; assumes every step succeeds. Needs no credentials or network."""

    def __init__(self, log: Callable[[str], None] = print):
        self.log = log

    def _would(self, call: str) -> None:
        self.log(f"would call: api.{call}")

    def dataset_exists(self, dataset_id: str) -> bool:
        self._would(f"dataset_status({dataset_id!r})  # 404 -> dataset_create_new, else dataset_create_version")
        return False

    def dataset_create_new(self, folder: Path) -> None:
        self._would(f"dataset_create_new(folder={str(folder)!r}, public=False, dir_mode='zip')")

    def dataset_create_version(self, folder: Path, notes: str) -> None:
        self._would(f"dataset_create_version(folder={str(folder)!r}, version_notes={notes!r}, dir_mode='zip')")

    def dataset_status(self, dataset_id: str) -> str:
        self._would(f"dataset_status({dataset_id!r})  # until 'ready'")
        return "ready"

    def kernels_push(self, folder: Path) -> int:
        self._would(f"kernels_push({str(folder)!r})  # returns the new version number")
        return 1

    def kernels_status(self, kernel_id: str) -> tuple[str, str]:
        self._would(f"kernels_status({kernel_id!r})  # until 'complete'")
        return "complete", ""

    def competition_submit(self, competition: str, kernel_id: str, version: int, message: str,
                           output_file: str = "submission.csv") -> str:
        self._would(f"competition_submit_code(file_name={output_file!r}, message={message!r}, "
                    f"competition={competition!r}, kernel={kernel_id!r}, kernel_version=<pushed version>)")
        return "dry run: nothing submitted"

    def latest_submission(self, competition: str) -> str:
        self._would(f"competition_submissions({competition!r})  # the new submission's status")
        return "dry run: no submission made"


def _raise_on_error(what: str, response: Any) -> None:
    error = getattr(response, "error", None)
    if error:
        raise KitError(f"Kaggle API {what} failed: {_one_line(error)}")


def _http_status(err: Exception) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _one_line(err: Any) -> str:
    text = " ".join(str(err).split())
    offline_words = ("Max retries", "NameResolution", "Failed to establish", "Network is unreachable")
    if isinstance(err, OSError) or "Connection" in type(err).__name__ or any(w in text for w in offline_words):
        return f"cannot reach kaggle.com, check the network ({type(err).__name__})"
    return text[:300] or type(err).__name__
