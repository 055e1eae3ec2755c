"""Team set-up against real servers on 127.0.0.1: DVC remote on S3 (moto), a shared MLflow server."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.e2e_helpers import TINY_SET, clone_project, git, project_env, run, set_args
from tests.servers import mlflow_server, postgres_bin, postgres_server, s3_server

pytestmark = pytest.mark.slow

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def test_a_lab_pushes_to_a_dvc_remote_logs_to_a_shared_mlflow_server_and_a_fresh_clone_has_nothing_to_do(
    tmp_path: Path,
):
    """A lab's set-up (docs/team.md): DVC's cache on S3, one MLflow server; one pipeline run serves both checks."""
    repo = clone_project(tmp_path / "proj")
    secret = "s3cr3t-pass-word"
    with s3_server(tmp_path) as endpoint, mlflow_server(tmp_path) as url:
        creds = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": secret, **S3_ENV}
        env = project_env(repo, MLFLOW_TRACKING_URI=url, **creds)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, **_boto_kwargs()).create_bucket(Bucket="lab-dvc")
        # The three commands a lab runs (docs/team.md), endpoint added for the local server.
        run(["dvc", "remote", "add", "-d", "storage", "s3://lab-dvc/nyu-depth"], repo, env)
        run(["dvc", "remote", "modify", "storage", "endpointurl", endpoint], repo, env)
        proc = run(["dvc", "exp", "run", "-n", "on-server", *set_args(TINY_SET)], repo, env)

        # The run, its figures and its best model are on the server (artifacts proxied, model registered).
        found = _rest(url, "experiments/search", {"max_results": 10})
        exp = next(e for e in found["experiments"] if e["name"] == "nyu-depth-unet")
        runs = _rest(url, "runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
        named = [r for r in runs if r["info"]["run_name"] == "on-server"]
        assert len(named) == 1, [r["info"]["run_name"] for r in runs]
        data = named[0]["data"]
        metrics = {m["key"] for m in data["metrics"]}
        params = {p["key"]: p["value"] for p in data["params"]}
        assert {"test/abs_rel", "test/delta1", "val/abs_rel"} <= metrics
        assert params["loss.lambda"] == "0.5"
        registered = _rest(url, "registered-models/get?name=nyu-depth-unet", None)["registered_model"]
        (version,) = registered["latest_versions"]
        assert version["run_id"] == named[0]["info"]["run_id"] and version["source"].startswith("models:/m-")

        # Pushed, then a teammate's fresh clone pulls everything and has nothing to recompute.
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "tiny run")
        run(["dvc", "push"], repo, env)
        fresh = tmp_path / "fresh"
        git(tmp_path, "clone", "-q", str(repo), str(fresh))
        env_fresh = project_env(fresh, MLFLOW_TRACKING_URI=url, **creds)
        run(["dvc", "pull"], fresh, env_fresh)
        assert (fresh / "models" / "model.pt").stat().st_size > 0
        assert (fresh / "data" / "processed" / "test.h5").exists()
        assert json.loads(run(["dvc", "status", "--json"], fresh, env_fresh).stdout) == {"track": ["always changed"]}
        out = run(["dvc", "repro"], fresh, env_fresh).stdout
        ran = [line for line in out.splitlines() if line.startswith("Running stage")]
        assert ran == ["Running stage 'track':"], out  # only the always-run MLflow stage; nothing recomputed
        shown = run(["dvc", "exp", "show", "--json"], fresh, env_fresh).stdout
        assert '"abs_rel"' in shown and '"delta1"' in shown
    # Credentials only ever come from the environment: never in params, tags, files or logs.
    everything = json.dumps(named[0]) + proc.stdout + proc.stderr
    for f in ["models/mlflow_run.json", "reports/metrics.json", "reports/report.html", "reports/report.md"]:
        everything += (repo / f).read_text()
    assert secret not in everything and "alice" not in json.dumps(data)


def _boto_kwargs() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def _rest(url: str, path: str, body: dict | None) -> dict:
    """One MLflow REST call: POST with a JSON body, or GET when `body` is None."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_tracking_against_an_mlflow_server_on_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if postgres_bin() is None:  # .ci/run installs Debian's postgresql; elsewhere: apt-get install postgresql
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    from pipeline.config import load_params
    from pipeline.tracking import resume_run, start_run

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    with postgres_server() as db, mlflow_server(tmp_path, backend=db) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("DVC_EXP_NAME", "on-postgres")
        with start_run(params, tmp_path) as tracker:
            tracker.log_metrics_history([{"epoch": e, "val_abs_rel": 0.5 / e} for e in (1, 2, 3)])
            tracker.write_run_id(tmp_path / "run.json")
        (tmp_path / "metrics.json").write_text('{"abs_rel": 0.2}')
        with resume_run(params, tmp_path / "run.json", tmp_path) as tracker:
            tracker.log_metrics({"abs_rel": 0.2})
            tracker.log_artifact(tmp_path / "metrics.json")
        run_id = json.loads((tmp_path / "run.json").read_text())["run_id"]
        got = _rest(url, "runs/get?run_id=" + run_id, None)["run"]
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/artifacts/list?run_id={run_id}", timeout=30) as r:
            artifacts = [f["path"] for f in json.loads(r.read()).get("files", [])]
        history = _rest(url, f"metrics/get-history?run_id={run_id}&metric_key=val%2Fabs_rel", None)["metrics"]
    assert got["info"]["run_name"] == "on-postgres" and got["info"]["status"] == "FINISHED"
    assert {p["key"]: p["value"] for p in got["data"]["params"]}["loss.lambda"] == "0.5"
    assert {m["key"]: m["value"] for m in got["data"]["metrics"]}["test/abs_rel"] == 0.2
    assert sorted(m["step"] for m in history) == [1, 2, 3]
    assert "metrics.json" in artifacts
