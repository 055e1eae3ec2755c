"""The track stage: the experiment's MLflow run completed with what cached stages did not log, nothing twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.tracking import start_run
from pipeline.tracking.names import evaluation_metrics
from pipeline.tracking.track import run as track
from tests.conftest import shrunk_params
from tests.report_fixtures import write_pose


def test_track_adds_what_is_missing_once_and_closes_the_run(tmp_path: Path, template_db: Path, monkeypatch) -> None:
    shutil.copyfile(template_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    params = shrunk_params(mlflow={"enabled": True, "system_metrics": False, "registered_model": ""})
    paths = params.paths.resolve(tmp_path)
    metrics = {k: 0.1 for k in ("abs_rel", "rmse", "delta1")} | {"baseline": {"abs_rel": 0.3}}
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(metrics))
    with start_run(params, tmp_path) as tracker:  # train, then evaluate logging its test metrics
        tracker.log_metrics(evaluation_metrics(metrics))
        tracker.write_run_id(paths.run_id)
    table = write_pose(tmp_path, params, np.random.default_rng(0))  # the pose stage came from DVC's cache

    added = track(params, tmp_path)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(added["run_id"])
    assert not [k for k in added["metrics"] if k in ("abs_rel", "baseline_abs_rel")]  # evaluate logged them
    assert len(client.get_metric_history(run.info.run_id, "test/abs_rel")) == 1
    assert run.data.metrics["pose/rgb_sensor/success_gap_1"] == pytest.approx(table["variants"]["rgb_sensor"]
                                                                              ["success"]["gap_1"])  # fmt: skip
    assert {"metrics.json", "pose_table.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.info.status == "FINISHED"
    again = track(params, tmp_path)  # idempotent: a second run adds nothing
    assert again["run_id"] == added["run_id"] and again["metrics"] == [] and again["artifacts"] == []
