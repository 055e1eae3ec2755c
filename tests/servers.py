"""Real servers on 127.0.0.1 for the team set-up tests: an S3-compatible store (moto) and MLflow."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode}): {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"no answer from {url} within {timeout_s} s")


@contextlib.contextmanager
def _serve(cmd: list[str], health_url: str, log: Path) -> Iterator[None]:
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_http(health_url, proc)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """A moto S3 server; yields its endpoint URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _serve(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], f"{url}/moto-api/", workdir / "moto.log"
    ):
        yield url


@contextlib.contextmanager
def mlflow_server(workdir: Path) -> Iterator[str]:
    """`mlflow server` with a sqlite backend and proxied artifacts; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{workdir}/server.db",
        "--artifacts-destination", str(workdir / "server-artifacts"),
        "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with _serve(cmd, f"{url}/health", workdir / "mlflow-server.log"):
        yield url
