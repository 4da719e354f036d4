"""`kit data` against the real kaggle 2.2.4 client and kagglesdk, with only the network replaced.

`requests.Session.send` - the one call under kagglesdk's HTTP client and the kaggle client's download retries - is
swapped for FakeKaggle, which answers like Kaggle's API and its storage: zip archives, JSON errors with HTTP
status codes, a connection that fails, a body that stops half-way. So the exceptions `kit data` maps to its one
lines are the ones the real client raises, from the code paths it really takes.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import requests
from urllib3.exceptions import ProtocolError

from kaggle_kit.data.download import download_data, staging_dir
from kaggle_kit.data.sample import sample_dir
from kaggle_kit.errors import KitError
from kaggle_kit.registry import get_competition
from tests.helpers import assert_one_line_error, run_kit

pytest.importorskip("kaggle")

ELL = get_competition("ell")
USPPPM = get_competition("uspppm")
API = "https://api.kaggle.com/v1/"
STORAGE = "https://storage.example.com/"
SECRET = "s3cr3t-kaggle-key-123"


class Body:
    """A urllib3-like raw body: yields the bytes in chunks, or raises ProtocolError after `cut_at` bytes."""

    def __init__(self, data: bytes, cut_at: int | None = None):
        self.data, self.cut_at = data, cut_at

    def stream(self, chunk_size, decode_content=True):
        end = len(self.data) if self.cut_at is None else self.cut_at
        for start in range(0, end, 4096):
            yield self.data[start:min(start + 4096, end)]
        if self.cut_at is not None:
            raise ProtocolError("Connection broken: IncompleteRead")

    def close(self):
        pass

    def release_conn(self):
        pass


def _response(request, status: int, data: bytes, headers: dict, url: str, cut_at: int | None = None):
    response = requests.Response()
    response.status_code = status
    response.raw = Body(data, cut_at)
    response.headers.update(headers)
    response.url = url
    response.request = request
    return response


class FakeKaggle:
    """Kaggle's API and storage as seen through requests.Session.send.

    `archives` maps a competition slug or dataset owner/slug to its zip bytes. `status` makes the API answer
    with that HTTP error (as Kaggle does: JSON {"code", "message"}); `offline` makes every request fail to
    connect; `cut_at` makes the storage stop after that many bytes, then refuse every later connection.
    """

    def __init__(self, archives: dict[str, bytes]):
        self.archives = archives
        self.status: int | None = None
        self.offline = False
        self.cut_at: int | None = None
        self.sent: list[requests.PreparedRequest] = []

    def install(self, monkeypatch) -> FakeKaggle:
        monkeypatch.setattr(requests.Session, "send", lambda session, request, **kwargs: self.send(request))
        return self

    def send(self, request):
        self.sent.append(request)
        if self.offline:
            raise requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded (NameResolutionError)")
        if request.url.startswith(API):
            return self._api(request)
        return self._storage(request)

    def _api(self, request):
        endpoint = request.url[len(API):]
        if self.status:
            body = json.dumps({"code": self.status, "message": f"fake {self.status}"}).encode()
            return _response(request, self.status, body, {"Content-Type": "application/json"}, request.url)
        if endpoint.endswith("IntrospectToken"):
            body = json.dumps({"active": True, "username": "kit-tester"}).encode()
            return _response(request, 200, body, {"Content-Type": "application/json"}, request.url)
        payload = json.loads(request.body)
        key = payload.get("competitionName") or f"{payload.get('ownerSlug')}/{payload.get('datasetSlug')}"
        url = f"{STORAGE}{key.split('/')[-1]}.zip?Signature=abc"
        get = requests.Request("GET", url).prepare()
        if self.cut_at is not None:
            cut, self.cut_at, self.offline = self.cut_at, None, True  # the network drops mid-way and stays down
            return _response(get, 200, self.archives[key], self._headers(key), url, cut_at=cut)
        return _response(get, 200, self.archives[key], self._headers(key), url)

    def _storage(self, request):
        key = next(k for k in self.archives if request.url.startswith(f"{STORAGE}{k.split('/')[-1]}.zip"))
        data = self.archives[key]
        start = int(request.headers.get("Range", "bytes=0-")[6:].rstrip("-"))
        headers = {**self._headers(key), "Content-Length": str(len(data) - start)}
        return _response(request, 206 if start else 200, data[start:], headers, request.url)

    def _headers(self, key: str) -> dict:
        return {"Content-Type": "application/zip", "Content-Length": str(len(self.archives[key])),
                "Accept-Ranges": "bytes", "ETag": f'"{key}-v1"', "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:  # stored: the cut-off lands mid-file
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def ell_files(rows: int = 40) -> dict[str, bytes]:
    """A small, valid ELL download made from the embedded sample."""
    train = pd.read_csv(sample_dir("ell") / "train.csv", dtype=str, keep_default_na=False).head(rows)
    test = train[["text_id", "full_text"]].head(3)
    submission = test[["text_id"]].assign(**{t: "3.0" for t in ELL.schema.target_names})
    return {name: frame.to_csv(index=False).encode() for name, frame in
            (("train.csv", train), ("test.csv", test), ("sample_submission.csv", submission))}


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    """No Kaggle settings from the real machine: a fresh HOME, no KAGGLE_* variables, an empty working folder."""
    import os

    for key in list(os.environ):
        if key.startswith("KAGGLE_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr("time.sleep", lambda _: None)  # the client's retry back-off
    return work


@pytest.fixture
def fake(monkeypatch):
    return FakeKaggle({ELL.kaggle_slug: _zip(ell_files())}).install(monkeypatch)


def _legacy_key(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "kit-tester")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _one_line(capsys, *args) -> str:
    code, _, err = run_kit(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert_one_line_error(code, err)
    assert SECRET not in err
    return lines[0]


def test_no_credentials_is_one_line_that_says_both_ways_and_writes_nothing(kaggle_env, fake, capsys):
    line = _one_line(capsys, "data", "ell")
    assert "no Kaggle credentials" in line
    for way in ("KAGGLE_API_TOKEN", "~/.kaggle/access_token", "kaggle.json", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        assert way in line
    assert fake.sent == [] and _tree(kaggle_env) == []


@pytest.mark.parametrize("credentials", ["legacy key", "api token"])
def test_no_network_is_one_line_and_writes_nothing(kaggle_env, fake, capsys, monkeypatch, credentials):
    if credentials == "legacy key":
        _legacy_key(monkeypatch)
    else:
        monkeypatch.setenv("KAGGLE_API_TOKEN", SECRET)  # the client checks a token with Kaggle while signing in
    fake.offline = True
    line = _one_line(capsys, "data", "ell")
    assert "cannot reach Kaggle" in line and "no network" in line
    assert fake.sent and _tree(kaggle_env) == []


def test_rules_not_accepted_names_the_rules_page(kaggle_env, fake, capsys, monkeypatch):
    _legacy_key(monkeypatch)
    fake.status = 403
    line = _one_line(capsys, "data", "ell")
    assert "HTTP 403" in line and f"https://www.kaggle.com/competitions/{ELL.kaggle_slug}/rules" in line
    assert _tree(kaggle_env) == []


def test_refused_credentials_say_how_to_make_new_ones(kaggle_env, fake, capsys, monkeypatch):
    _legacy_key(monkeypatch)
    fake.status = 401
    line = _one_line(capsys, "data", "ell")
    assert "refused the credentials (HTTP 401)" in line and "kaggle.com/settings/api" in line
    assert _tree(kaggle_env) == []


def test_download_unpacks_checks_and_renames_into_place(kaggle_env, fake, capsys, monkeypatch):
    _legacy_key(monkeypatch)
    code, _, err = run_kit(capsys, "data", "ell")
    assert code == 0, err
    assert "wrote data/ell/" in err and "train.csv 40 rows" in err and SECRET not in err
    assert _tree(kaggle_env) == ["data", "data/ell", "data/ell/sample_submission.csv", "data/ell/test.csv",
                                 "data/ell/train.csv"]
    assert (kaggle_env / "data/ell/train.csv").read_bytes() == ell_files()["train.csv"]
    calls = [r.url for r in fake.sent]
    assert calls == [f"{API}competitions.CompetitionApiService/DownloadDataFiles"]
    assert json.loads(fake.sent[0].body) == {"competitionName": ELL.kaggle_slug}

    fake.sent.clear()
    code, _, err = run_kit(capsys, "data", "ell")
    assert code == 0 and "is complete" in err and "nothing to download" in err
    assert fake.sent == []


def test_files_that_do_not_match_the_schema_are_not_written(kaggle_env, fake, capsys, monkeypatch):
    _legacy_key(monkeypatch)
    files = ell_files()
    files["train.csv"] = files["train.csv"].replace(b",conventions", b",convention", 1)
    fake.archives[ELL.kaggle_slug] = _zip(files)
    line = _one_line(capsys, "data", "ell")
    assert "do not match the ell schema" in line and "missing column(s) 'conventions'" in line
    assert "nothing was written to data/ell/" in line
    assert _tree(kaggle_env) == []


def test_a_cut_off_download_is_one_line_and_resumes(kaggle_env, fake, capsys, monkeypatch):
    _legacy_key(monkeypatch)
    archive = fake.archives[ELL.kaggle_slug]
    fake.cut_at = len(archive) // 2
    line = _one_line(capsys, "data", "ell")
    assert "cut off" in line and "run the same command again to resume" in line
    partial = staging_dir(Path("data/ell")) / f"{ELL.kaggle_slug}.zip"
    assert not (kaggle_env / "data/ell").exists()
    assert partial.stat().st_size == len(archive) // 2  # the kaggle client's five retries found no network

    fake.offline = False
    fake.sent.clear()
    code, _, err = run_kit(capsys, "data", "ell")
    assert code == 0, err
    ranges = [r.headers.get("Range") for r in fake.sent if r.url.startswith(STORAGE)]
    assert ranges == [f"bytes={len(archive) // 2}-"]  # resumed, not downloaded again
    assert (kaggle_env / "data/ell/train.csv").read_bytes() == ell_files()["train.csv"]
    assert not staging_dir(kaggle_env / "data/ell").exists()


def test_an_existing_folder_only_gets_the_files_it_lacks(kaggle_env, fake, capsys, monkeypatch):
    _legacy_key(monkeypatch)
    folder = kaggle_env / "data" / "ell"
    folder.mkdir(parents=True)
    mine = ell_files(rows=12)["train.csv"]  # valid, but not what Kaggle serves: must stay as it is
    (folder / "train.csv").write_bytes(mine)
    code, _, err = run_kit(capsys, "data", "ell")
    assert code == 0, err
    assert "test.csv" in err and (folder / "train.csv").read_bytes() == mine
    assert sorted(p.name for p in folder.iterdir()) == ["sample_submission.csv", "test.csv", "train.csv"]


def test_an_out_that_is_a_file_is_one_line(kaggle_env, fake, capsys):
    (kaggle_env / "taken").write_text("x")
    assert "--out taken: is a file" in _one_line(capsys, "data", "ell", "--out", "taken")
    assert fake.sent == [] and _tree(kaggle_env) == ["taken"]


def test_a_complete_but_invalid_folder_is_left_alone(kaggle_env, fake, capsys, monkeypatch):
    folder = kaggle_env / "data" / "ell"
    folder.mkdir(parents=True)
    for name, data in ell_files().items():
        (folder / name).write_bytes(data.replace(b"text_id", b"essay_id") if name == "test.csv" else data)
    line = _one_line(capsys, "data", "ell")
    assert "holds every file but they do not match the ell schema" in line and "test.csv" in line
    assert fake.sent == []


def test_uspppm_gets_the_cpc_titles_from_their_dataset(kaggle_env, monkeypatch, capsys):
    train = "id,anchor,target,context,score\n" + "".join(
        f"{i},anchor {i % 4},target {i},A47,{[0, 0.25, 0.5, 0.75, 1][i % 5]}\n" for i in range(20))
    files = {"train.csv": train.encode(), "test.csv": b"id,anchor,target,context\nt1,a,b,A47\n",
             "sample_submission.csv": b"id,score\nt1,0\n"}
    titles = b"code,title,section,class,subclass,group,main_group\nA,HUMAN NECESSITIES,A,,,,\nA47,FURNITURE,A,47,,,\n"
    server = FakeKaggle({USPPPM.kaggle_slug: _zip(files), "xhlulu/cpc-codes": _zip({"titles.csv": titles})})
    server.install(monkeypatch)
    _legacy_key(monkeypatch)
    code, _, err = run_kit(capsys, "data", "uspppm")
    assert code == 0, err
    folder = kaggle_env / "data" / "uspppm"
    assert (folder / "cpc_titles.csv").read_bytes() == titles
    assert sorted(p.name for p in folder.iterdir()) == ["cpc_titles.csv", "sample_submission.csv", "test.csv",
                                                        "train.csv"]
    dataset_call = json.loads(server.sent[1].body)
    assert (dataset_call["ownerSlug"], dataset_call["datasetSlug"]) == ("xhlulu", "cpc-codes")


def test_only_the_missing_titles_are_fetched_and_checked_with_the_files_there(kaggle_env, monkeypatch):
    """data/uspppm/ has the competition files but no cpc_titles.csv: only the titles dataset is downloaded, and
    the check runs on the folder as it would be - here a context code of train.csv has no title."""
    folder = kaggle_env / "data" / "uspppm"
    folder.mkdir(parents=True)
    files = {"train.csv": b"id,anchor,target,context,score\n1,a,b,B61,0.5\n2,a,c,A47,0\n",
             "test.csv": b"id,anchor,target,context\nt1,a,b,A47\n", "sample_submission.csv": b"id,score\nt1,0\n"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    titles = b"code,title\nA,HUMAN NECESSITIES\nA47,FURNITURE\n"
    server = FakeKaggle({"xhlulu/cpc-codes": _zip({"titles.csv": titles})}).install(monkeypatch)
    _legacy_key(monkeypatch)
    with pytest.raises(KitError, match="do not match the uspppm schema.*no title for 1 context code.*'B61'"):
        download_data(USPPPM, log=lambda _: None)
    assert [r.url.rsplit("/", 1)[-1] for r in server.sent if r.url.startswith(API)] == ["DownloadDataset"]
    assert _tree(kaggle_env) == ["data", "data/uspppm", *(f"data/uspppm/{n}" for n in sorted(files))]
