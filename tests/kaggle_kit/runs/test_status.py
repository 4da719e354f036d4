"""Run status from the manifest and the process that wrote it: `running` only while that process lives."""

import datetime as dt
import json
import os
import socket

import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json, write_json
from kaggle_kit.runs import status
from kaggle_kit.runs.folder import RunDir, check_not_running, latest_incomplete_run
from kaggle_kit.runs.status import Heartbeat, effective_status, elapsed_seconds
from tests.helpers import dead_pid

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)


def ago(seconds: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds)).isoformat()


def manifest(state="running", **session):
    return {"status": state, "started": ago(3600), "sessions": [{**status.this_process(), "started": ago(3600),
                                                                 "heartbeat": ago(5), **session}]}


def test_a_running_run_of_a_live_process_is_running():
    assert effective_status(manifest(), NOW) == "running"


def test_a_running_run_whose_process_is_gone_is_dead():
    assert effective_status(manifest(pid=dead_pid()), NOW) == "dead"


def test_a_reused_pid_does_not_make_a_dead_run_alive():
    # this process holds the pid now, but it is not the process that started the run
    assert effective_status(manifest(pid_start="another-boot:123"), NOW) == "dead"


def test_on_another_host_the_heartbeat_decides():
    fresh = manifest(host="elsewhere", pid=1, heartbeat=ago(60))
    stale = manifest(host="elsewhere", pid=1, heartbeat=ago(status.STALE_AFTER_SECONDS + 60))
    assert effective_status(fresh, NOW) == "running"
    assert effective_status(stale, NOW) == "dead"


def test_a_manifest_without_sessions_is_judged_by_its_start_time():
    assert effective_status({"status": "running", "started": ago(60)}, NOW) == "running"
    assert effective_status({"status": "running", "started": ago(2 * status.STALE_AFTER_SECONDS)}, NOW) == "dead"


@pytest.mark.parametrize("state", ["complete", "partial", "interrupted", "failed"])
def test_other_statuses_are_reported_as_written(state):
    assert effective_status(manifest(state, pid=dead_pid()), NOW) == state


def test_elapsed_sums_the_sessions_and_skips_the_gap_between_them():
    killed = {"host": "h", "pid": 1, "started": ago(1000), "heartbeat": ago(900), "ended": None}
    resumed = {"host": "h", "pid": 2, "started": ago(300), "heartbeat": ago(100), "ended": ago(100)}
    assert elapsed_seconds({"status": "complete", "sessions": [killed, resumed]}, NOW) == 100 + 200
    assert elapsed_seconds({"status": "complete", "started": ago(50), "finished": ago(20)}, NOW) == 30


def test_elapsed_of_a_live_run_counts_up_to_now():
    live = manifest(started=ago(120), heartbeat=ago(60))
    assert elapsed_seconds(live, NOW) == 120


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_heartbeat_writes_the_session_and_at_most_every_interval(tmp_path):
    path = tmp_path / "manifest.json"
    write_json(path, {"status": "running", "started": "x"})
    clock = Clock()
    beat = Heartbeat(path, every=30, clock=clock)
    beat.start()
    session = read_json(path)["sessions"][-1]
    assert session["pid"] == os.getpid() and session["host"] == socket.gethostname() and session["ended"] is None
    first = session["heartbeat"]
    write_json(path, {**read_json(path), "marker": 1})  # detects a rewrite: the heartbeat re-reads the file
    clock.now = 10
    beat.beat()
    assert read_json(path)["sessions"][-1]["heartbeat"] == first and beat.last == 0.0
    clock.now = 31
    beat.beat()
    assert beat.last == 31 and read_json(path)["marker"] == 1
    beat.end("interrupted")
    final = read_json(path)
    assert final["status"] == "interrupted" and final["sessions"][-1]["outcome"] == "interrupted"
    assert final["sessions"][-1]["ended"]


def test_heartbeat_end_of_a_finished_run_keeps_its_status(tmp_path):
    path = tmp_path / "manifest.json"
    write_json(path, {"status": "running"})
    beat = Heartbeat(path)
    beat.start()
    write_json(path, {**read_json(path), "status": "complete"})  # what finalize writes
    beat.end("complete")
    assert read_json(path)["status"] == "complete" and len(read_json(path)["sessions"]) == 1


def _run(root, name, state, **session):
    folder = root / "ell" / name
    folder.mkdir(parents=True)
    (folder / "run_config.json").write_text("{}")
    (folder / "manifest.json").write_text(json.dumps({"status": state, "sessions": [
        {**status.this_process(), "started": status.now_iso(), "heartbeat": status.now_iso(), **session}]}))
    return folder


def test_resume_never_picks_or_accepts_a_run_that_is_still_running(tmp_path):
    dead = _run(tmp_path, "dead", "running", pid=dead_pid())
    live = _run(tmp_path, "live", "running")
    os.utime(dead / "run_config.json", (1, 1))  # the live run is the newest
    assert latest_incomplete_run(tmp_path, "ell") == dead
    with pytest.raises(KitError, match="still running"):
        check_not_running(RunDir(live))
    check_not_running(RunDir(dead))
    assert RunDir(dead).status() == "dead" and RunDir(live).status() == "running"
