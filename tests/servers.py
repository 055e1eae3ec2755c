"""Real servers on 127.0.0.1 for the team set-up tests: an S3-compatible store (moto) and MLflow."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def _serve(cmd: list[str], health_url: str, log: Path, **popen: Any) -> Iterator[None]:
    """Runs `cmd` in its own process group until the block ends, once `health_url` answers.

    The whole group is stopped: `mlflow models serve` runs the real server (uvicorn) as a child.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen)
        try:
            _wait_http(health_url, proc)
            yield
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group `proc` leads, then SIGKILL after 20 s."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


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
def mlflow_server(workdir: Path, backend: str | None = None) -> Iterator[str]:
    """`mlflow server` with a database backend (sqlite unless given) and proxied artifacts; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", backend or f"sqlite:///{workdir}/server.db",
        "--artifacts-destination", str(workdir / "server-artifacts"),
        "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with _serve(cmd, f"{url}/health", workdir / "mlflow-server.log"):
        yield url


@contextlib.contextmanager
def model_server(model_uri: str, workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """`mlflow models serve` of `model_uri` with the local environment manager; yields its URL.

    `env` must hold the tracking URI of a `models:/` URI; the venv's bin folder is put on
    PATH, where the server looks for `uvicorn`.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    with _serve(cmd, f"{url}/ping", workdir / "model-server.log", env=env, cwd=workdir):
        yield url


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (`apt-get install postgresql`), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (trust auth); yields a SQLAlchemy URI to a fresh db.

    initdb refuses to run as root, so as root the cluster runs as the `postgres` user,
    in its own folder under /tmp (pytest's tmp_path sits below a root-only folder).
    """
    import os
    import pwd
    import shutil
    import tempfile

    pg = postgres_bin()
    assert pg is not None, "PostgreSQL server binaries not found"
    base = Path(tempfile.mkdtemp(prefix="pg-test-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for d in (base, sock):
            shutil.chown(d, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    try:
        subprocess.run([*as_user, str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)  # fmt: skip
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
        subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w",
                        "start"], check=True, capture_output=True)  # fmt: skip
        subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
                       check=True, capture_output=True)  # fmt: skip
        # The explicit driver: SQLAlchemy 2.1's default for postgresql:// is psycopg 3.
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
