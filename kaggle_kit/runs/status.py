"""Honest run status: a manifest says "running" only while the process that trains it is alive.

While a run trains, its manifest holds one session per process that worked on it (host, pid, the pid's start
time, start and heartbeat times). A crash that Python sees ends the session as `interrupted` (Ctrl-C, SIGTERM)
or `failed`; SIGKILL, a power cut or an OOM kill leave `"status": "running"` behind, so a reader judges
liveness itself: on the same host the pid must still exist and be the same process (pids are reused, so its
start time must match); from another host, only the heartbeat can tell, and one older than STALE_AFTER
means dead.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from pathlib import Path
from typing import Any

from kaggle_kit.fileio import read_json, write_json

# The step loop asks for a heartbeat every optimizer step; the manifest is rewritten at most this often.
HEARTBEAT_SECONDS = 30.0
# A run on another host (or one without a recorded process) whose heartbeat is older than this is dead.
# Long enough for the slowest thing between two heartbeats (one validation of a large model).
STALE_AFTER_SECONDS = 30 * 60.0

# What the manifest can say, plus `dead` (a `running` manifest whose process is gone).
STATUSES = ("running", "complete", "partial", "interrupted", "failed", "dead")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _pid_start(pid: int) -> str | None:
    """An id of the process holding `pid` that changes when the pid is reused: boot id + start tick (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name in parentheses may hold spaces
    return f"{boot}:{fields[19]}"


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] == "Z"


def this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start(os.getpid())}


def process_alive(session: dict[str, Any]) -> bool | None:
    """True/False for a session of this host; None when this host cannot tell (another host, no pid)."""
    pid = session.get("pid")
    if session.get("host") != socket.gethostname() or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    if _is_zombie(pid):
        return False
    recorded, current = session.get("pid_start"), _pid_start(pid)
    if recorded and current and recorded != current:
        return False
    return True


def current_session(manifest: dict[str, Any]) -> dict[str, Any]:
    sessions = manifest.get("sessions") or []
    return sessions[-1] if sessions else {}


def effective_status(manifest: dict[str, Any], now: dt.datetime | None = None,
                     stale_after: float = STALE_AFTER_SECONDS) -> str:
    """The manifest's status, except that a `running` run whose process is gone is `dead`."""
    status = manifest.get("status") or "unknown"
    if status != "running":
        return status
    session = current_session(manifest)
    alive = process_alive(session)
    if alive is not None:
        return "running" if alive else "dead"
    beat = parse_time(session.get("heartbeat") or manifest.get("started"))
    now = now or dt.datetime.now(dt.timezone.utc)
    if beat is None or (now - beat).total_seconds() > stale_after:
        return "dead"
    return "running"


def elapsed_seconds(manifest: dict[str, Any], now: dt.datetime | None = None) -> float | None:
    """Time spent training, summed over sessions (the gaps between a crash and its resume do not count)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    sessions = manifest.get("sessions")
    if not sessions:
        start, end = parse_time(manifest.get("started")), parse_time(manifest.get("finished"))
        return (end - start).total_seconds() if start and end else None
    live = effective_status(manifest, now) == "running"
    total = 0.0
    for i, session in enumerate(sessions):
        start = parse_time(session.get("started"))
        end = parse_time(session.get("ended")) or (now if live and i == len(sessions) - 1
                                                   else parse_time(session.get("heartbeat")))
        if start and end:
            total += max(0.0, (end - start).total_seconds())
    return total


def describe_session(session: dict[str, Any], now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    beat = parse_time(session.get("heartbeat"))
    ago = f", last heartbeat {int((now - beat).total_seconds())} s ago" if beat else ""
    return f"pid {session.get('pid')} on {session.get('host')}{ago}"


class Heartbeat:
    """Writes this process's session into the manifest: at start, every HEARTBEAT_SECONDS, and at the end.

    Only the training thread writes the manifest, so reads and writes never interleave.
    """

    def __init__(self, manifest_path: Path, every: float = HEARTBEAT_SECONDS, clock=time.monotonic):
        self.path = manifest_path
        self.every = every
        self.clock = clock
        self.last = -float("inf")

    def record(self, session: dict[str, Any] | None = None, **changes: Any) -> None:
        """Update this process's session and top-level manifest keys (read, change, atomic write)."""
        manifest = read_json(self.path)
        manifest["sessions"][-1].update(session or {})
        manifest.update(changes)
        write_json(self.path, manifest)
        self.last = self.clock()

    def start(self) -> None:
        manifest = read_json(self.path)
        stamp = now_iso()
        manifest.setdefault("sessions", []).append({**this_process(), "started": stamp, "heartbeat": stamp,
                                                    "ended": None, "outcome": None})
        manifest["status"] = "running"
        write_json(self.path, manifest)
        self.last = self.clock()

    def beat(self, force: bool = False) -> None:
        if force or self.clock() - self.last >= self.every:
            self.record(session={"heartbeat": now_iso()})

    def end(self, outcome: str, error: str | None = None) -> None:
        """Close the session; a crash also sets the run's status (a finished run's status is already written)."""
        stamp = now_iso()
        session = {"heartbeat": stamp, "ended": stamp, "outcome": outcome}
        if error:
            session["error"] = error
        if outcome in ("interrupted", "failed"):
            self.record(session=session, status=outcome)
        else:
            self.record(session=session)
