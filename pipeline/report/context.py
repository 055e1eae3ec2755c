"""Provenance: which code, data, params, machine and runs produced this report."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Params, to_yaml_dict
from pipeline.provenance import code_version

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Provenance:
    """Everything a reader needs to find or re-create the run behind the report."""

    source: str
    device: str
    git_commit: str
    dvc_experiment: str
    mlflow_run_id: str
    date: str
    params: dict[str, Any]  # params.yaml as a nested dict, `lambda` spelled as in YAML

    def facts(self) -> dict[str, str]:
        """The one-line facts, in display order."""
        return {
            "Data source": self.source,
            "Device": self.device,
            "Git commit": self.git_commit,
            "DVC experiment": self.dvc_experiment,
            "MLflow run id": self.mlflow_run_id,
            "Report date (UTC)": self.date,
        }


def collect_provenance(
    params: Params, repo_root: Path, metrics: dict[str, Any], run_id: str | None, now: dt.datetime | None = None
) -> Provenance:
    """Gathers the provenance facts.

    Args:
        params: this run's params (all sections are shown, not only the report's).
        repo_root: the git checkout.
        metrics: metrics.json, for the source and device evaluation actually used.
        run_id: the MLflow run id, None when tracking was off.
        now: the report date (for tests); defaults to the current UTC time.
    """
    now = now or dt.datetime.now(dt.UTC)
    return Provenance(
        source=str(metrics.get("source", params.data.source)),
        device=str(metrics.get("device") or UNKNOWN),
        git_commit=str(code_version(repo_root)),
        # DVC sets DVC_EXP_NAME while running `dvc exp run`; a plain `dvc repro` is the workspace.
        dvc_experiment=os.environ.get("DVC_EXP_NAME") or "workspace",
        mlflow_run_id=run_id or "none (tracking disabled)",
        date=now.strftime("%Y-%m-%d %H:%M"),
        params=to_yaml_dict(params),
    )
