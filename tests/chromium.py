"""Headless Chromium driven over the DevTools protocol on a pipe: stdlib only, no port, no driver.

`--remote-debugging-pipe` makes Chromium read protocol commands from its fd 3 and
write replies and events to its fd 4, each message JSON ended by a NUL byte. One page
is opened per `Chromium.load`, with the Network, Runtime and Log domains on, so every
request the page makes, every console message and uncaught exception is seen; after
the load event every <img> is decoded in the page.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The launch flags: headless, no sandbox (root in CI), and nothing that phones home by
# itself (so any request seen comes from the page).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
TIMEOUT_S = 60.0  # per protocol reply: generous, the 2-core CI machine runs other tests meanwhile
SETTLE_S = 0.5  # events are collected this long after the load event, for late requests or errors

# Every image decoded (decode() waits for it and rejects a broken one), with its size.
_IMAGES_JS = """Promise.all(Array.from(document.images).map(i => i.decode().then(
  () => ({src: i.src.slice(0, 60), width: i.naturalWidth}), () => ({src: i.src.slice(0, 60), width: 0}))))"""


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, else `chromium` / `chromium-browser` on PATH, else None."""
    candidates = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "/usr/bin/chromium"]
    return next((p for c in candidates if c and (p := shutil.which(c))), None)


@dataclass
class PageLoad:
    """What one page did while it loaded."""

    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)

    def offsite_requests(self) -> list[str]:
        """Requests other than the page itself and data: URIs: what a self-contained page must not make."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


class Chromium:
    """One headless browser process (a context manager); `load(path)` opens a page in a fresh tab."""

    def __init__(self, binary: str, profile_dir: Path) -> None:
        self._log = profile_dir / "chromium.log"
        cmd_r, self._cmd_w = os.pipe()  # we write commands; the browser reads them on its fd 3
        self._out_r, out_w = os.pipe()  # the browser writes on its fd 4; we read
        # Moved to fds >= 10 so the shell's `3<&R 4>&W` cannot clobber one with the other.
        r, w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(out_w)
        argv = [binary, *FLAGS, f"--user-data-dir={profile_dir / 'profile'}", "about:blank"]
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                ["bash", "-c", f'exec "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', "chromium", *argv],
                pass_fds=(r, w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        os.close(r)
        os.close(w)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._out_r, selectors.EVENT_READ)
        self._buf = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.version = self.call("Browser.getVersion")["product"]

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Asks the browser to quit; kills it (by its pid) if it does not within 10 s."""
        try:
            self._send("Browser.close")
            self._proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait(10)
        finally:
            os.close(self._cmd_w)
            os.close(self._out_r)

    def log_tail(self, n: int = 20) -> str:
        """The last lines of the browser's own stderr, for failure messages."""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-n:])

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None if none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            if not self._sel.select(max(0.0, deadline - time.monotonic())):
                return None
            chunk = os.read(self._out_r, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self._proc.poll()}):\n{self.log_tail()}")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Sends a command and returns its result; events that arrive meanwhile are kept."""
        want = self._send(method, params, session)
        while (msg := self._recv(TIMEOUT_S)) is not None:
            if msg.get("id") != want:
                self._events.append(msg)
            elif "error" in msg:
                raise RuntimeError(f"{method}: {msg['error']}")
            else:
                return msg["result"]
        raise TimeoutError(f"no reply to {method} in {TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self._events):
            msg = self._recv(max(0.0, deadline - time.monotonic()))
            if msg is None:
                raise TimeoutError(f"no {method} in {TIMEOUT_S:.0f} s:\n{self.log_tail()}")
            self._events.append(msg)

    def load(self, path: Path) -> PageLoad:
        """Opens `path` in a new tab; returns its requests, console errors and decoded images."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=session)
        self._events.clear()
        page = PageLoad(Path(path).resolve().as_uri())
        self.call("Page.navigate", {"url": page.url}, session=session)
        self._wait_for("Page.loadEventFired", session)
        images = self.call(
            "Runtime.evaluate", {"expression": _IMAGES_JS, "awaitPromise": True, "returnByValue": True}, session=session
        )
        page.images = images["result"]["value"]
        while (msg := self._recv(SETTLE_S)) is not None:
            self._events.append(msg)
        for e in self._events:
            if e.get("sessionId") == session:
                _record(page, e.get("method", ""), e.get("params", {}))
        self.call("Target.closeTarget", {"targetId": target})
        return page


def _record(page: PageLoad, method: str, params: dict[str, Any]) -> None:
    """Files one protocol event under the page's requests or errors."""
    if method == "Network.requestWillBeSent":
        url = params["request"]["url"]
        page.requests.append(url[:60] if url.startswith("data:") else url)  # an image's data: URI is its whole PNG
    elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        page.errors.append("console." + params["type"] + ": " + " ".join(str(a.get("value")) for a in params["args"]))
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        page.errors.append(f"{params['entry']['source']}: {params['entry']['text']} {params['entry'].get('url', '')}")
    elif method == "Runtime.exceptionThrown":
        page.errors.append("uncaught: " + params["exceptionDetails"].get("text", ""))
