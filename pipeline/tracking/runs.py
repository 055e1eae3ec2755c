"""One MLflow run per pipeline execution: train starts it, evaluate and report reopen it.

Train writes the run id to the DVC-tracked `paths.run_id` file (`Tracker.write_run_id`);
the later stages read it back with `resume_run`, so all three log into the same run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Params
from pipeline.tracking.store import open_store, resolve_root, tracking_uri, warn_unavailable
from pipeline.tracking.tracker import Tracker

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


def default_run_name(params: Params) -> str:
    """`DVC_EXP_NAME` under `dvc exp run`, else e.g. `nyudv2-eigen-lam0.5-20250101-120000`."""
    name = os.environ.get("DVC_EXP_NAME", "").strip()
    if name:
        return name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{params.data.source}-{params.loss.name}-lam{params.loss.lam:g}-{stamp}"


def git_commit(root: Path) -> str | None:
    """The code version: DVC's experiment baseline if set, else `git rev-parse HEAD` in `root`."""
    baseline = os.environ.get("DVC_EXP_BASELINE_REV", "").strip()
    if baseline:
        return baseline
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout (e.g. an exported copy): the tag is just left out
    return out.stdout.strip() or None


def run_tags(params: Params, root: Path) -> dict[str, str]:
    """Tags set when the run is created; train adds `device` later with `set_tags`."""
    import torch

    tags = {
        "mlflow.source.git.commit": git_commit(root),
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME"),
        "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV"),
        "data.source": params.data.source,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
    }
    return {k: v for k, v in tags.items() if v}


def _new_run(client: MlflowClient, uri: str, experiment_id: str, params: Params, root: Path) -> Tracker:
    """Creates a run with its name and tags and logs every (non-secret) param."""
    from pipeline.tracking.redact import drop_secrets

    tags, _ = drop_secrets(run_tags(params, root))
    run = client.create_run(experiment_id, tags=tags, run_name=default_run_name(params))
    tracker = Tracker(client, run.info.run_id, experiment_id, uri)
    tracker.log_params(params.to_flat_dict())
    log.info("MLflow run %s (%s) in experiment %s", run.info.run_name, run.info.run_id, experiment_id)
    return tracker


def start_run(params: Params, repo_root: str | Path | None = None) -> Tracker:
    """Starts the pipeline's MLflow run (train). Never raises.

    Args:
        params: the pipeline params; all of them are logged as run params (secrets excluded).
        repo_root: the repository root when DVC does not set `DVC_ROOT` (default: cwd).

    Returns:
        A tracker for the new run; a no-op tracker if MLflow is disabled or unusable.
    """
    if not params.mlflow.enabled:
        return Tracker()
    root = resolve_root(repo_root)
    try:
        client, uri, experiment_id = open_store(params, root)
        return _new_run(client, uri, experiment_id, params, root)
    except Exception as e:
        uri = tracking_uri(root)
        warn_unavailable(uri, e)
        return Tracker(uri=uri)  # no run, but the run-id file still says which store failed


def read_run_id(path: str | Path) -> str | None:
    """The run id in a run-id file, or None (with a warning) if missing, unreadable or null."""
    try:
        data: Any = json.loads(Path(path).read_text())
    except FileNotFoundError:
        log.warning("MLflow run-id file %s not found; starting a new MLflow run", path)
        return None
    except (OSError, ValueError) as e:
        log.warning("MLflow run-id file %s is unreadable (%s); starting a new MLflow run", path, e)
        return None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    if not isinstance(run_id, str) or not run_id:
        log.warning("MLflow run-id file %s holds no run id; starting a new MLflow run", path)
        return None
    return run_id


def _find_run(client: MlflowClient, run_id: str) -> Any:
    """The run, or None if the store does not have it (another store, deleted); other errors raise."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return None if run.info.lifecycle_stage == "deleted" else run


def resume_run(params: Params, run_id_path: str | Path, repo_root: str | Path | None = None) -> Tracker:
    """Reopens the run that train started (evaluate, report). Never raises.

    If the run-id file is missing, holds no id, or names a run this store does not have,
    a new run is started instead, with a warning.

    Args:
        params: the pipeline params (`mlflow.*`; all are logged if a new run is started).
        run_id_path: the run-id file written by train (`params.paths.run_id`).
        repo_root: the repository root when DVC does not set `DVC_ROOT` (default: cwd).

    Returns:
        A tracker for the run, reopened with status RUNNING; a no-op tracker if MLflow is
        disabled or unusable.
    """
    if not params.mlflow.enabled:
        return Tracker()
    root = resolve_root(repo_root)
    run_id = read_run_id(run_id_path)
    try:
        client, uri, experiment_id = open_store(params, root)
        run = _find_run(client, run_id) if run_id else None
        if run is None:
            if run_id:
                log.warning("MLflow run %s (from %s) is not in this store; starting a new run", run_id, run_id_path)
            return _new_run(client, uri, experiment_id, params, root)
        client.update_run(run_id, status="RUNNING")
        return Tracker(client, run_id, run.info.experiment_id, uri)
    except Exception as e:
        uri = tracking_uri(root)
        warn_unavailable(uri, e)
        return Tracker(uri=uri)  # no run, but the run-id file still says which store failed
