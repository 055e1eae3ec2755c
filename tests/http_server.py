"""A small local HTTP server on 127.0.0.1 for the download tests, with failure switches.

It serves in-memory files, honours (or ignores) Range requests, can answer 5xx a few
times, cut responses short, and act as a forward proxy (it accepts absolute-URI request
lines such as `GET http://mirror.invalid/f HTTP/1.1`). Every request is recorded.
It runs in a daemon thread, stops at the end of its `with` block, and stops itself
after `lifetime_s` whatever happens, so a failing test can never hang on it.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Switches:
    """How the server misbehaves. Counters count down as responses are served."""

    range_supported: bool = True
    fail_5xx: int = 0  # the first N requests get 503
    drop_after: int | None = None  # body bytes sent before the connection is dropped...
    drop_times: int = 0  # ...for the first M responses (then complete ones)
    chunk_delay_s: float = 0.0  # sleep between 64 KiB body chunks: a slow link to kill -9 mid-transfer


@dataclass
class Seen:
    """One request as the server saw it."""

    target: str  # the request line's target: a path, or an absolute URL when used as a proxy
    host: str | None
    range: str | None
    status: int = 0
    body_bytes: int = 0  # body bytes actually written


@dataclass
class _State:
    files: dict[str, bytes]
    switches: Switches
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # seconds; a stuck client cannot hold a thread for long
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:  # noqa: N802 (the base class's naming)
        state, sw = self.server.state, self.server.state.switches
        seen = Seen(self.path, self.headers.get("Host"), self.headers.get("Range"))
        with state.lock:
            state.requests.append(seen)
            fail = sw.fail_5xx > 0
            sw.fail_5xx -= fail
            drop = sw.drop_after is not None and sw.drop_times > 0
            sw.drop_times -= drop
        body = state.files.get(urllib.parse.urlsplit(self.path).path)
        if fail or body is None:
            seen.status = 503 if fail else 404
            self.send_error(seen.status)
            return
        start = _range_start(seen.range) if sw.range_supported else None
        if start is not None and start >= len(body):
            seen.status = 416
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        seen.status = 200 if start is None else 206
        self.send_response(seen.status)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        payload = body[start or 0 :]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes" if sw.range_supported else "none")
        self.end_headers()
        if drop:
            payload = payload[: sw.drop_after]
            self.close_connection = True  # the client sees EOF before Content-Length is reached
        if sw.chunk_delay_s <= 0:
            self.wfile.write(payload)
            seen.body_bytes = len(payload)
            return
        for i in range(0, len(payload), 1 << 16):
            try:
                self.wfile.write(payload[i : i + (1 << 16)])
            except OSError:
                return  # the client went away (killed)
            seen.body_bytes += len(payload[i : i + (1 << 16)])
            time.sleep(sw.chunk_delay_s)


def _range_start(header: str | None) -> int | None:
    """The N of `bytes=N-`, the only form the downloader sends."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    return int(header[len("bytes=") : -1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class LocalHTTPServer:
    """`with LocalHTTPServer({"/f.mat": data}) as srv: fetch(srv.url("/f.mat"), ...)`."""

    def __init__(self, files: dict[str, bytes], switches: Switches | None = None, lifetime_s: float = 30.0) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.state = _State(dict(files), switches or Switches())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False
        self._stop_lock = threading.Lock()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[Seen]:
        return self._httpd.state.requests

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> LocalHTTPServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            if self._thread.is_alive():  # shutdown() waits forever on a loop that never started
                self._httpd.shutdown()
            self._timer.cancel()
            self._httpd.server_close()

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
