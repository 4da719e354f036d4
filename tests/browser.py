"""Open an HTML file in real headless Chromium and report what a user's browser would see.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages separated by
NUL bytes on file descriptors 3 and 4). Why this way: the page's console messages, uncaught exceptions, failed
loads and every network request arrive as protocol events, so "no console errors" and "no network" are
checked, not guessed from stderr; images can be asked whether they decoded; the screenshot comes from the same
page. A pipe opens no TCP port (no clash between parallel test runs, nothing listening on a shared machine)
and needs no websocket package. `--dump-dom` and `--screenshot` would give neither console messages nor
image state.

    python -m tests.browser PAGE.html SHOT.png     # a full-page screenshot (the README's docs/report.png)
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageVisit:
    console: list[dict[str, Any]] = field(default_factory=list)  # Runtime.consoleAPICalled
    exceptions: list[dict[str, Any]] = field(default_factory=list)  # Runtime.exceptionThrown
    log_entries: list[dict[str, Any]] = field(default_factory=list)  # Log.entryAdded (failed loads, violations)
    requests: list[str] = field(default_factory=list)  # Network.requestWillBeSent URLs
    images: list[dict[str, Any]] = field(default_factory=list)  # complete, natural size, page position
    text: str = ""
    screenshot: bytes = b""

    def errors(self) -> list[str]:
        found = [f"console.{m['type']}: {m.get('args')}" for m in self.console if m["type"] in ("error", "assert")]
        for event in self.exceptions:
            details = event.get("exceptionDetails", {})
            found.append(f"exception: {details.get('text')} {details.get('exception', {}).get('description', '')}")
        found += [f"log {e['entry']['level']}: {e['entry'].get('text')} {e['entry'].get('url', '')}"
                  for e in self.log_entries if e["entry"]["level"] == "error"]
        return found


class Chromium:
    """One headless browser; `visit(path)` loads a page in a fresh tab and collects what happened."""

    def __init__(self, binary: str | None = None, width: int = 1280, timeout: float = 60.0):
        binary = binary or find_chromium()
        if binary is None:
            raise FileNotFoundError("chromium not found (apt-get install chromium)")
        self.timeout = timeout
        self.width = width
        self.profile = tempfile.mkdtemp(prefix="kit-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = ["--headless", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-sync", "--hide-scrollbars", "--mute-audio", f"--user-data-dir={self.profile}",
                f"--window-size={width},900", "about:blank"]
        if os.geteuid() == 0:
            args.insert(0, "--no-sandbox")  # Chromium refuses to run its sandbox as root
        # bash puts our pipe ends on the descriptors Chromium expects: 3 (commands in), 4 (replies out)
        # (not sh: dash redirects only single-digit descriptors)
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', binary, *args],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    # --- the protocol ---------------------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe ({self._exit_reason()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "still running"
        stderr = self.process.stderr.read().decode(errors="replace")[-2000:] if self.process.stderr else ""
        return f"exit code {code}: {stderr}"

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"chromium has exited ({self._exit_reason()})") from None
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    def _drain(self, session: str, seconds: float) -> None:
        """Collect the events that arrive shortly after load (late console messages, image decodes)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self._events.append(self._read_message(deadline))
            except TimeoutError:
                return

    # --- a page ---------------------------------------------------------------------------------------------

    def visit(self, page: Path) -> PageVisit:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": Path(page).resolve().as_uri()}, session=session)
        self.wait_for("Page.loadEventFired", session)
        self._drain(session, 0.5)
        visit = PageVisit()
        events = [e for e in self._events if e.get("sessionId") == session]
        self._events = [e for e in self._events if e.get("sessionId") != session]
        for event in events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled":
                visit.console.append(params)
            elif event.get("method") == "Runtime.exceptionThrown":
                visit.exceptions.append(params)
            elif event.get("method") == "Log.entryAdded":
                visit.log_entries.append(params)
            elif event.get("method") == "Network.requestWillBeSent":
                visit.requests.append(params["request"]["url"])
        state = self.send("Runtime.evaluate", {"returnByValue": True, "expression": """JSON.stringify({
            images: [...document.images].map(i => {const r = i.getBoundingClientRect();
                return {alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
                        x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}}),
            text: document.body.innerText, height: document.documentElement.scrollHeight})"""}, session=session)
        page_state = json.loads(state["result"]["value"])
        visit.images = page_state["images"]
        visit.text = page_state["text"]
        height = max(1, int(page_state["height"]))
        self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": height,
                                                          "deviceScaleFactor": 1, "mobile": False}, session=session)
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        visit.screenshot = base64.b64decode(shot["data"])
        self.send("Target.closeTarget", {"targetId": target})
        return visit

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    page_path, shot_path = Path(sys.argv[1]), Path(sys.argv[2])
    with Chromium(width=int(sys.argv[3]) if len(sys.argv) > 3 else 1280) as browser:
        result = browser.visit(page_path)
    shot_path.write_bytes(result.screenshot)
    print(f"{shot_path}: {len(result.screenshot)} bytes; errors: {result.errors() or 'none'}; "
          f"requests: {result.requests}")
