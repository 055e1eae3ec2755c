"""Where MLflow data lives, and getting the store ready safely when runs start in parallel.

The default store is `sqlite:///<repo root>/mlflow.db` with artifacts in
`<repo root>/mlartifacts/<experiment>`. The repo root is `DVC_ROOT` when DVC sets it:
queued and `--temp` experiments run in a temporary copy of the repo that is deleted
afterwards, so anything relative to the working directory would vanish with it.

A fresh sqlite store is created by MLflow's migrations on first use; two processes
doing that at once (`dvc queue start -j 2`) corrupt it, so the first use (and the
experiment's creation) is serialised with `flock` on `<db>.lock`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Params

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# A fresh store's migrations take ~2 s; waiting minutes for the lock means a stuck process.
LOCK_TIMEOUT_S = 120.0
# A remote server gets one quick try when the stage starts, instead of MLflow's default
# 7 retries with exponential backoff (minutes) before we learn it is down.
HTTP_CHECK_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# MLflow 3's UI opens an experiment by its kind: without this tag a fresh browser lands on
# the GenAI overview (traces, token usage); with it, on the runs table of model training.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def resolve_root(repo_root: str | Path | None = None) -> Path:
    """The repo root that owns the store: `DVC_ROOT` if DVC set it, else `repo_root`, else cwd."""
    return Path(os.environ.get("DVC_ROOT") or repo_root or Path.cwd()).resolve()


def tracking_uri(repo_root: str | Path | None = None) -> str:
    """The tracking URI: `MLFLOW_TRACKING_URI` if set, else `sqlite:///<root>/mlflow.db`.

    A relative sqlite path in `MLFLOW_TRACKING_URI` is anchored at the repo root, for
    the same reason as the default: a temporary experiment copy would delete it.

    Args:
        repo_root: the repository root when DVC does not set `DVC_ROOT` (default: cwd).
    """
    root = resolve_root(repo_root)
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return f"sqlite:///{root / DB_NAME}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel, sep, query = uri[len("sqlite:///") :].partition("?")
        if rel and not rel.startswith(":memory:"):
            return f"sqlite:///{root / rel}{sep}{query}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, or None for other stores and in-memory ones."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].partition("?")[0]
    return None if not path or path.startswith(":memory:") else Path(path)


def is_remote(uri: str) -> bool:
    """Whether the store is a server (whose own artifact root should be used), not a local database."""
    return uri.split(":", 1)[0] in {"http", "https", "databricks", "databricks-uc", "uc"}


def artifact_location(root: Path, experiment: str) -> str:
    """`file://<root>/mlartifacts/<experiment>`, the experiment name made safe as a folder name."""
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return (root / ARTIFACTS_DIR / folder).as_uri()


@contextlib.contextmanager
def _init_lock(uri: str, timeout_s: float) -> Iterator[None]:
    """Holds an exclusive `flock` on `<db>.lock` for a sqlite store; nothing for other stores."""
    db = sqlite_path(uri)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; parallel first use is then the user's to avoid
        fcntl = None  # type: ignore[assignment]
    if db is None or fcntl is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{db}.lock held by another process for over {timeout_s:.0f} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _check_sqlite(uri: str, timeout_s: float) -> None:
    """Fails fast on a sqlite file that is not a database or is held locked by a writer.

    Done with plain sqlite3 before MLflow sees the file, because MLflow retries engine
    creation for ~100 s and logs a traceback per failed statement.
    """
    db = sqlite_path(uri)
    if db is None or not db.exists() or db.stat().st_size == 0:
        return  # a missing or empty file is a fresh store: MLflow creates it
    con = sqlite3.connect(db, timeout=timeout_s)
    try:
        # BEGIN IMMEDIATE takes the write lock: "database is locked" here means a writer
        # holds it; reading sqlite_master fails on a file that is not a database.
        con.execute("BEGIN IMMEDIATE")
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        con.rollback()
    finally:
        con.close()


@contextlib.contextmanager
def _fail_fast_http(uri: str) -> Iterator[None]:
    """Temporarily sets one quick try for HTTP requests, unless the user chose their own values."""
    if not uri.startswith(("http://", "https://")):
        yield
        return
    added = {k: v for k, v in HTTP_CHECK_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _get_or_create_experiment(client: MlflowClient, name: str, location: str | None) -> str:
    """The experiment's id, creating it if needed; tolerates another process creating it first.

    A new experiment is created as a custom-model one (`EXPERIMENT_KIND`); an existing
    one without a kind gets it the first time the pipeline uses it. A kind someone set
    by hand is left alone.
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        # A deleted experiment still owns its name; runs cannot be created in it.
        log.warning("MLflow experiment '%s' was deleted; restoring it", name)
        client.restore_experiment(exp.experiment_id)
    for key, value in EXPERIMENT_KIND.items():
        if key not in exp.tags:
            client.set_experiment_tag(exp.experiment_id, key, value)
    return exp.experiment_id


def open_store(params: Params, root: Path) -> tuple[MlflowClient, str, str]:
    """Opens the store and gets or creates the experiment, serialised across processes.

    Returns:
        (client, tracking URI, experiment id).

    Raises:
        Exception: anything from mlflow, sqlite3 or the lock; callers turn it into a warning.
    """
    from mlflow import MlflowClient

    uri = tracking_uri(root)
    name = params.mlflow.experiment
    location = None if is_remote(uri) else artifact_location(root, name)
    with _init_lock(uri, LOCK_TIMEOUT_S), _fail_fast_http(uri):
        # How long to wait for another writer: `mlflow.lock_wait_s` (20 s by default, like
        # MLflow's own busy timeout per statement).
        _check_sqlite(uri, params.mlflow.lock_wait_s)
        client = MlflowClient(tracking_uri=uri)  # creates the tables of a fresh sqlite store
        experiment_id = _get_or_create_experiment(client, name, location)
    return client, uri, experiment_id


def init_store(params: Params, repo_root: str | Path | None = None) -> str | None:
    """Creates the store and the experiment once, before parallel runs start.

    Call it before `dvc queue start -j N` (`python -m pipeline.tracking`). Never raises:
    an unusable store gives a warning and None.

    Args:
        params: the pipeline params (`mlflow.enabled`, `mlflow.experiment`).
        repo_root: the repository root when DVC does not set `DVC_ROOT` (default: cwd).

    Returns:
        The experiment id, or None if tracking is disabled or the store is unusable.
    """
    if not params.mlflow.enabled:
        return None
    root = resolve_root(repo_root)
    try:
        return open_store(params, root)[2]
    except Exception as e:
        warn_unavailable(tracking_uri(root), e)
        return None


def warn_unavailable(uri: str, err: BaseException, what: str = "open the store") -> None:
    """The one warning for a store that cannot be used; the pipeline goes on without tracking."""
    from pipeline.tracking.redact import redact_text, redact_uri

    first_line = (str(err).strip().splitlines() or [""])[0][:300]
    log.warning(
        "MLflow: could not %s at %s (%s: %s); continuing without MLflow tracking",
        what,
        redact_uri(uri),
        type(err).__name__,
        redact_text(first_line),
    )
