"""`kit doctor`: which rows fail (exit 1), which warn, and that credentials are named, never shown."""

from __future__ import annotations

import json
from collections import namedtuple

import pytest

from kaggle_kit import doctor
from tests.helpers import run_kit

SECRET = "s3cr3t-token-value"
Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine with plenty of disk, no Kaggle settings, and an image list that matches this environment."""
    import os

    for key in list(os.environ):
        if key.startswith("KAGGLE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda _: Usage(100 * 2**30, 0, 50 * 2**30))
    return tmp_path


def _image(tmp_path, python="3.12", **versions):
    """An image list with every kit requirement at its installed version, overridden by `versions`."""
    core, _, _ = doctor._kit_requirements()
    pins = {req.name: doctor._installed(req.name) for req in core}
    pins.update(versions)
    lines = [f"{name}=={v}" for name, v in pins.items() if v]
    path = tmp_path / "image.txt"
    path.write_text(f"# date: test\n# python: {python}\n" + "\n".join(lines) + "\n")
    return path


def _row(rows, check):
    return next(r for r in rows if r.check == check)


def test_a_matching_machine_has_no_failures_and_exits_0(machine, capsys):
    code, out, err = run_kit(capsys, "doctor", "--image-packages", _image(machine))
    assert code == 0, out + err
    assert "kit doctor" in out and "doctor: no failures" in err
    for check in ("python", "torch", "transformers", "[kaggle]", "[simulate]", "kaggle credentials", "precision",
                  "disk"):
        assert check in out


def test_an_image_python_the_kit_wheel_cannot_install_on_fails(machine, capsys):
    rows = doctor.run_checks(_image(machine, python="3.8"), machine)
    assert _row(rows, "python").status == "fail" and "would fail" in _row(rows, "python").note
    code, _, err = run_kit(capsys, "doctor", "--image-packages", _image(machine, python="3.8"))
    assert code == 1 and "1 failure(s) (python)" in err


def test_a_missing_or_out_of_range_requirement_fails(machine, monkeypatch):
    installed = doctor._installed
    monkeypatch.setattr(doctor, "_installed", lambda name: {"pandas": None, "numpy": "1.0"}.get(name, installed(name)))
    rows = doctor.run_checks(_image(machine, pandas="2.3.3", numpy="2.4.6"), machine)
    assert _row(rows, "pandas").status == "fail" and _row(rows, "pandas").value == "not installed"
    assert _row(rows, "numpy").status == "fail" and "numpy>=" in _row(rows, "numpy").note


def test_an_unreadable_image_list_fails(machine, capsys):
    code, out, _ = run_kit(capsys, "doctor", "--image-packages", machine / "nope.txt")
    assert code == 1 and "kaggle image list" in out and "unreadable" in out


@pytest.mark.parametrize("free_gib, status", [(0.5, "fail"), (3.0, "warn"), (50.0, "ok")])
def test_free_disk_thresholds(machine, monkeypatch, free_gib, status):
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda _: Usage(100 * 2**30, 0, free_gib * 2**30))
    row = doctor.disk_row(machine)
    assert row.status == status
    assert (status == "warn") == ("kit bundle --out DIR" in row.note)


def test_free_disk_is_measured_where_the_folder_will_be(machine, monkeypatch):
    seen = []
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: seen.append(p) or Usage(1, 0, 50 * 2**30))
    row = doctor.disk_row(machine / "not" / "yet")
    assert seen == [machine.resolve()] and str(machine.resolve()) in row.value


def test_tokenizer_packages_newer_than_the_image_warn_other_differences_inform(machine):
    rows = doctor.run_checks(_image(machine, tokenizers="0.19.0", tqdm="4.66.0", safetensors=None), machine)
    assert _row(rows, "tokenizers").status == "warn" and "0.19.0" in _row(rows, "tokenizers").note
    assert "kit simulate --bundle BUNDLE --data DATA --image" in _row(rows, "tokenizers").note
    assert "pip install transformers==" in _row(rows, "tokenizers").note and "tokenizers==0.19.0" in _row(
        rows, "tokenizers").note
    assert _row(rows, "tqdm").status == "info"
    assert _row(rows, "safetensors").status == "info" and "downloads its wheel" in _row(rows, "safetensors").note
    assert not doctor.failed(rows)


def test_credentials_are_present_or_absent_never_shown(machine, monkeypatch, capsys):
    absent = doctor.credentials_row()
    assert absent.status == "info" and absent.value == "absent" and "`kaggle auth login`" in absent.note
    monkeypatch.setenv("KAGGLE_API_TOKEN", SECRET)
    (machine / ".kaggle").mkdir()
    (machine / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "me", "key": SECRET}))
    row = doctor.credentials_row()
    assert row.status == "ok" and row.value == "present"
    assert "KAGGLE_API_TOKEN" in row.note and "kaggle.json" in row.note
    code, out, err = run_kit(capsys, "doctor", "--image-packages", _image(machine))
    assert code == 0 and SECRET not in out + err


def test_each_way_the_kaggle_client_accepts_is_found(machine, monkeypatch):
    from kaggle_kit.kaggle_api import credential_sources

    assert credential_sources() == []
    monkeypatch.setenv("KAGGLE_USERNAME", "me")
    assert credential_sources() == []  # a username alone signs in nowhere
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    assert credential_sources() == ["KAGGLE_USERNAME/KAGGLE_KEY"]
    monkeypatch.delenv("KAGGLE_USERNAME")
    (machine / ".kaggle").mkdir()
    (machine / ".kaggle" / "access_token").write_text("  \n")
    assert credential_sources() == []  # an empty token file is no token (as kagglesdk reads it)
    (machine / ".kaggle" / "access_token").write_text(SECRET)
    (machine / ".kaggle" / "credentials.json").write_text("{}")
    assert credential_sources() == ["~/.kaggle/access_token", "~/.kaggle/credentials.json (kaggle auth login)"]


def test_kaggle_json_is_found_where_the_client_looks(machine, monkeypatch):
    """kaggle 2.x: $KAGGLE_CONFIG_DIR, else ~/.kaggle if it exists, else ~/.config/kaggle on Linux."""
    from kaggle_kit.kaggle_api import credential_sources, credentials_file

    xdg = machine / ".config" / "kaggle"
    xdg.mkdir(parents=True)
    (xdg / "kaggle.json").write_text("{}")
    assert credentials_file() == xdg / "kaggle.json" and credential_sources() == [str(xdg / "kaggle.json")]
    (machine / ".kaggle").mkdir()
    assert credentials_file() == machine / ".kaggle" / "kaggle.json" and credential_sources() == []
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(xdg))
    assert credential_sources() == [str(xdg / "kaggle.json")]


def test_a_missing_extra_warns_with_its_install_line(machine, monkeypatch):
    installed = doctor._installed
    monkeypatch.setattr(doctor, "_installed", lambda name: None if name == "nbclient" else installed(name))
    rows = doctor.run_checks(_image(machine), machine)
    row = _row(rows, "[simulate]")
    assert row.status == "warn" and "nbclient" in row.value and "pip install 'kaggle-kit[simulate]'" in row.note
    assert not doctor.failed(rows)


# What a row's note may tell the user to run: every warning says what to do.
COMMANDS = ("pip install ", "kit simulate ", "kaggle auth login", "kit bundle ")


def test_every_warning_of_the_readme_install_says_what_to_do(machine):
    """This environment is the README's install (`pip install -c constraints-dev.txt -e ".[all]"`) checked against
    the shipped image list, on a machine without credentials: each warn row names a command, and what needs no
    action (no credentials before `kit data`) is info."""
    rows = doctor.run_checks(None, machine)
    assert not doctor.failed(rows)
    assert _row(rows, "kaggle credentials").status == "info"
    for row in rows:
        if row.status == "warn":
            assert any(command in row.note for command in COMMANDS), row
