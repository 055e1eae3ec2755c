"""The track stage: `run(params, root)`, the experiment's MLflow run made whole, whatever DVC restored.

The pipeline's last stage, and the only one DVC always runs (`always_changed`): a stage
restored from DVC's run cache never runs, so it never logs. This one finds the
experiment's own run (`resume_run`: never another experiment's), adds what that run
lacks of the experiment's outputs -- the test metrics (metrics.json), the pose figures
(the pose table), the report and the metrics files as artifacts -- and closes it. What a
stage that did run already logged is left as it is (nothing is logged twice).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline.config import Params
from pipeline.tracking.names import evaluation_metrics, mlflow_key, pose_metrics
from pipeline.tracking.runs import resume_run

log = logging.getLogger(__name__)


def _read(path: Path) -> dict[str, Any] | None:
    """A JSON output, or None where the stage that writes it did not run (its absence is logged, not raised)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("track: %s is unreadable (%s); not logged", path, e)
        return None
    return data if isinstance(data, dict) else None


def run(params: Params, root: Path) -> dict[str, Any]:
    """Completes and closes the experiment's MLflow run. Never fails the pipeline.

    Returns:
        {"run_id", "metrics": keys added, "artifacts": names added}; run_id None when MLflow is off.
    """
    paths = params.paths.resolve(root)
    added: dict[str, Any] = {"run_id": None, "metrics": [], "artifacts": []}
    with resume_run(params, paths.run_id, root) as tracker:
        if not tracker.active:
            return added
        keys, artifacts = tracker.logged()
        figures: dict[str, float] = {}
        if (metrics := _read(paths.metrics)) is not None:
            figures |= evaluation_metrics(metrics)
        if (table := _read(paths.pose_table)) is not None and table.get("enabled"):
            figures |= pose_metrics(table)
        missing = {k: v for k, v in figures.items() if mlflow_key(k) not in keys}  # as the run names them
        tracker.log_metrics(missing)
        files = (paths.metrics, paths.pose_metrics, paths.pose_table, paths.report_html, paths.report_md)
        new_files = [f for f in files if f.is_file() and f.name not in artifacts]
        for f in new_files:
            tracker.log_artifact(f)
        if paths.figures_dir.is_dir() and paths.figures_dir.name not in artifacts:
            tracker.log_artifacts(paths.figures_dir, artifact_path=paths.figures_dir.name)
            new_files.append(paths.figures_dir)
        added = {"run_id": tracker.run_id, "metrics": sorted(missing), "artifacts": [f.name for f in new_files]}
    log.info("track: MLflow run %s: %d metrics and %d artifacts added", added["run_id"], len(added["metrics"]),
             len(added["artifacts"]))  # fmt: skip
    return added
