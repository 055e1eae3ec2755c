"""One MLflow run per DVC experiment: train starts it, the later stages reopen it.

Train writes the run id to the DVC-tracked `paths.run_id` file (`Tracker.write_run_id`)
and tags the run with the experiment's key (`run_key`: the DVC experiment's name and
baseline commit, or `workspace` and the commit under plain `dvc repro`). The later stages
reopen that run only when it belongs to the experiment running now. When DVC restored
train from its run cache, the file names a run another experiment made: those stages then
log into this experiment's own run, created once and found again by its key, tagged
`pipeline.source_run_id` (the run that trained the model) and seeded with its training
metrics (`train/`, `val/`).
Nothing is ever written into another experiment's run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Params
from pipeline.errors import PipelineError
from pipeline.provenance import code_version
from pipeline.tracking.redact import safe_items
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


RUN_KEY_TAG = "pipeline.run_key"
SOURCE_RUN_TAG = "pipeline.source_run_id"


def run_key(root: Path) -> str:
    """Which experiment a run belongs to: `<DVC experiment name>@<baseline commit>`, or `workspace@<commit>`."""
    name = os.environ.get("DVC_EXP_NAME", "").strip() or "workspace"
    baseline = os.environ.get("DVC_EXP_BASELINE_REV", "").strip() or code_version(root).commit
    return f"{name}@{baseline}"


def run_tags(params: Params, root: Path) -> dict[str, str]:
    """Tags set when the run is created; train adds `device` later with `set_tags`."""
    import torch

    version = code_version(root)
    tags = {
        # The runs table's Source column: the pipeline's entry point (the run spans train,
        # evaluate and report) and its commit.
        "mlflow.source.name": "dvc.yaml",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": version.commit,
        "git.dirty": str(version.dirty).lower(),
        RUN_KEY_TAG: run_key(root),
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME"),
        "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV"),
        "data.source": params.data.source,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
    }
    return {k: v for k, v in tags.items() if v}


def _new_run(client: MlflowClient, uri: str, experiment_id: str, params: Params, root: Path,
             extra_tags: dict[str, str] | None = None) -> Tracker:  # fmt: skip
    """Creates a run with its name and tags and logs every (non-secret) param."""
    tags, _ = safe_items({**run_tags(params, root), **(extra_tags or {})})
    run = client.create_run(experiment_id, tags=tags, run_name=default_run_name(params))
    tracker = Tracker(client, run.info.run_id, experiment_id, uri)
    tracker.log_params(params.to_flat_dict())
    log.info("MLflow run %s (%s) in experiment %s", run.info.run_name, run.info.run_id, experiment_id)
    return tracker


def start_run(params: Params, repo_root: str | Path | None = None) -> Tracker:
    """Starts the pipeline's MLflow run (train), sampling system metrics if `mlflow.system_metrics`. Never raises.

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
        tracker = _new_run(client, uri, experiment_id, params, root)
    except Exception as e:
        uri = tracking_uri(root)
        warn_unavailable(uri, e)
        return Tracker(uri=uri)  # no run, but the run-id file still says which store failed
    if params.mlflow.system_metrics:
        tracker.start_system_metrics(params.mlflow.system_metrics_interval)  # until the run ends
    return tracker


def read_run_id(path: str | Path) -> str | None:
    """The run id in a run-id file written by `Tracker.write_run_id`; None when tracking was off.

    Raises:
        PipelineError: the file is missing, unreadable or not a run-id file.
    """
    path = Path(path)
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"MLflow run-id file {path} is missing; run the 'train' stage first") from None
    except (OSError, ValueError) as e:
        raise PipelineError(f"MLflow run-id file {path} is unreadable ({e}); re-run 'train'") from None
    if not isinstance(data, dict) or "run_id" not in data:
        raise PipelineError(f"MLflow run-id file {path} lacks key 'run_id'; re-run 'train'")
    run_id = data["run_id"]
    return str(run_id) if run_id else None


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
    try:
        run_id = read_run_id(run_id_path)
        if run_id is None:
            log.warning("MLflow run-id file %s holds no run id; starting a new MLflow run", run_id_path)
    except PipelineError as e:
        log.warning("%s; starting a new MLflow run", e)
        run_id = None
    try:
        client, uri, experiment_id = open_store(params, root)
        run = _find_run(client, run_id) if run_id else None
        if run is None and run_id:
            log.warning("MLflow run %s (from %s) is not in this store; starting a new run", run_id, run_id_path)
        key = run_key(root)
        if run is not None and run.data.tags.get(RUN_KEY_TAG) != key:
            run = _experiment_run(client, experiment_id, key, run, params, root, uri)
        if run is None:
            return _new_run(client, uri, experiment_id, params, root)
        client.update_run(run.info.run_id, status="RUNNING")
        return Tracker(client, run.info.run_id, run.info.experiment_id, uri)
    except Exception as e:
        uri = tracking_uri(root)
        warn_unavailable(uri, e)
        return Tracker(uri=uri)  # no run, but the run-id file still says which store failed


def _experiment_run(client: MlflowClient, experiment_id: str, key: str, source: Any, params: Params, root: Path,
                    uri: str) -> Any:  # fmt: skip
    """This experiment's run when `source` (the run that trained the model) belongs to another: found or made."""
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", order_by=["attributes.start_time DESC"],
        max_results=1,
    )  # fmt: skip
    if found:
        return found[0]
    source_id = source.info.run_id
    log.info("the model comes from DVC's run cache (MLflow run %s, another experiment's): logging into a run of "
             "this experiment's own, linked by the tag %s", source_id, SOURCE_RUN_TAG)  # fmt: skip
    tracker = _new_run(client, uri, experiment_id, params, root, {SOURCE_RUN_TAG: source_id})
    # The training figures are this experiment's too (the same params trained the same model); its test
    # and pose figures come from this experiment's own stages (or `track`), never from the other's.
    copied = {k: v for k, v in source.data.metrics.items() if k.startswith(("train/", "val/"))}
    tracker.log_metrics(copied)
    assert tracker.run_id is not None  # _new_run either made the run or raised
    return client.get_run(tracker.run_id)
