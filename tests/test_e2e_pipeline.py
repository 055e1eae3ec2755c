"""End to end: DVC experiments on tiny synthetic data, matched by MLflow runs.

Each test works on a fresh copy of the repository in tmp_path, with the MLflow store
inside it (the default `sqlite:///<repo>/mlflow.db`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.e2e_helpers import TINY_SET, clone_project, git, project_env, run, set_args
from tests.http_server import LocalHTTPServer
from tests.nyu_fixtures import make_tiny_nyu

pytestmark = pytest.mark.slow


def _exp_records(show_json: list) -> dict[str, dict]:
    """Experiment name -> its `data` block (params, metrics), from `dvc exp show --json`."""
    found: dict[str, dict] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("name") and isinstance(node.get("data"), dict) and "params" in node["data"]:
                found[node["name"]] = node["data"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(show_json)
    return found


def _params_and_metrics(data: dict) -> tuple[dict, dict]:
    params = data["params"]["params.yaml"]["data"]
    metrics = data["metrics"]["reports/metrics.json"]["data"]
    return params, metrics


def _mlflow_runs(repo: Path) -> dict[str, object]:
    client = MlflowClient(tracking_uri=f"sqlite:///{repo}/mlflow.db")
    exp = client.get_experiment_by_name("nyu-depth-unet")
    assert exp is not None, "the MLflow experiment was not created"
    runs = client.search_runs([exp.experiment_id])
    return {r.info.run_name: r for r in runs}, client


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return clone_project(tmp_path / "proj")


DATA_SUFFIXES = (".png", ".jpg", ".h5", ".mat", ".npz", ".pt", ".html", ".tgz", ".tar", ".zip", ".onnx")


def _committed_files(repo: Path, ref: str) -> list[str]:
    """The files an experiment's commit adds or changes against the commit it was run from."""
    return run(["git", "diff-tree", "--no-commit-id", "--name-only", "-r", f"{ref}^", ref], repo).stdout.split()


def _commit_baseline(repo: Path, overrides: list[str]) -> str:
    """A researcher's baseline: `overrides` written into params.yaml, `dvc repro`, params and dvc.lock committed."""
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    for kv in overrides:
        key, value = kv.split("=", 1)
        *parents, leaf = key.split(".")
        node = raw
        for k in parents:
            node = node[k]
        node[leaf] = yaml.safe_load(value)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = run(["dvc", "repro"], repo).stdout
    git(repo, "add", "params.yaml", "dvc.lock")
    git(repo, "commit", "-qm", "baseline: tiny params and their dvc.lock")
    return out


def test_three_experiments_stay_comparable_in_dvc_and_mlflow_and_an_eval_change_reruns_only_evaluation(repo: Path):
    # λ = 0.5 (the default) as the committed baseline with results, then λ = 0 and 1 as experiments.
    outs = {"baseline": _commit_baseline(repo, TINY_SET)}
    for name, lam in (("lam-zero", "0"), ("lam-one", "1")):
        outs[name] = run(["dvc", "exp", "run", "-n", name, "-S", f"loss.lambda={lam}"], repo).stdout

    # The methods that never read the model ran once; the experiments took them from DVC's cache.
    assert "Running stage 'pose_reference'" in outs["baseline"]
    for name in ("lam-zero", "lam-one"):
        assert "Running stage 'pose_reference'" not in outs[name] and "Running stage 'pose'" in outs[name]
    records = _exp_records(json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout))
    for name, lam in (("lam-zero", 0), ("lam-one", 1)):
        assert name in records, f"{name} missing from dvc exp show: {sorted(records)}"
        params, metrics = _params_and_metrics(records[name])
        assert params["loss"]["lambda"] == lam
        for key in ("delta1", "abs_rel", "rmse", "silog"):
            assert 0 <= metrics[key] < float("inf")
        assert set(metrics["baseline"]) >= {"delta1", "abs_rel"}
        # The headline pose figures: every method, a few numbers each.
        pose = records[name]["metrics"]["reports/pose_metrics.json"]["data"]
        assert {"encoder_predicted", "rgb_sensor", "identity", "open3d"} <= set(pose)
        assert 0 <= pose["rgb_sensor"]["success_gap_1"] <= 1 and pose["rgb_sensor"]["ate_m"] >= 0
        # No data in git: the experiment's commit holds dvc.lock and the params, never an output.
        committed = _committed_files(repo, records[name]["rev"])
        assert "dvc.lock" in committed, committed
        assert not [f for f in committed if f.endswith(DATA_SUFFIXES) or f.startswith(("data/", "models/"))], committed

    # Readable: the columns that differ between the three fit a 200-column terminal.
    table = run(["dvc", "exp", "show", "--only-changed", "--csv"], repo).stdout
    header = table.splitlines()[0].split(",")
    shown = f"{len(header)} columns: {' '.join(header)}"
    assert len(header) <= 60, shown
    assert "loss.lambda" in header and "abs_rel" in header, shown
    assert not [c for c in header if "rpe" in c or "rot_deg" in c], shown  # the full pose table is not a metric
    assert len(table.splitlines()) == 1 + 4  # workspace, the baseline and the two experiments
    # The applied experiment's params and dvc.lock; no output shows up (every one is git-ignored).
    assert set(run(["git", "status", "--porcelain"], repo).stdout.splitlines()) == {" M params.yaml", " M dvc.lock"}

    runs, client = _mlflow_runs(repo)
    baseline = next(r for n, r in runs.items() if n.startswith("synthetic-eigen-lam0.5"))
    runs["baseline"] = baseline
    for name, lam in (("baseline", "0.5"), ("lam-zero", "0"), ("lam-one", "1")):
        assert name in runs, f"no MLflow run named {name}: {sorted(runs)}"
        r = runs[name]
        assert float(r.data.params["loss.lambda"]) == float(lam)
        assert "test/abs_rel" in r.data.metrics and "baseline/abs_rel" in r.data.metrics
        assert "pose/encoder_predicted/rpe_gap_1_trans_rmse_m" in r.data.metrics  # the pose stage, same run
        assert "pose/open3d/ate_se3_rmse_m" in r.data.metrics
        history = client.get_metric_history(r.info.run_id, "val/abs_rel")
        assert sorted(m.step for m in history) == [1, 2]
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"report.html", "metrics.json", "pose_table.json", "model", "images"} <= artifacts, artifacts
        assert {i.tags[0].value for i in r.inputs.dataset_inputs} == {"train", "val", "test"}
        assert r.info.status == "FINISHED"
    # Each experiment registered its best model as a new version, from its own run.
    versions = client.search_model_versions("name='nyu-depth-unet'")
    names = ("baseline", "lam-zero", "lam-one")
    assert sorted(v.run_id for v in versions) == sorted(runs[n].info.run_id for n in names)

    # A fourth experiment reuses lam-one's model from DVC's run cache, with other pose pairs:
    # it gets a run of its own, linked to lam-one's, and writes nothing into lam-one's.
    first = runs["lam-one"]
    key = "pose/rgb_sensor/rpe_gap_1_trans_rmse_m"
    before = client.get_metric_history(first.info.run_id, key)
    out = run(["dvc", "exp", "run", "-n", "lam-one-gaps", "-S", "loss.lambda=1", "-S", "pose.gaps=[1,3]"], repo).stdout
    assert "Running stage 'train'" not in out and "Running stage 'pose'" in out, out
    runs, client = _mlflow_runs(repo)
    second, first = runs["lam-one-gaps"], client.get_run(first.info.run_id)
    assert second.info.run_id != first.info.run_id
    assert second.data.tags["pipeline.source_run_id"] == first.info.run_id  # linked to the run that trained it
    assert second.data.params["pose.gaps"] == "[1, 3]" and first.data.params["pose.gaps"] == "[1, 2]"
    assert "pose/rgb_sensor/success_gap_3" in second.data.metrics and "test/abs_rel" in second.data.metrics
    assert "pose/rgb_sensor/success_gap_3" not in first.data.metrics  # nothing written into lam-one's run
    assert "pose/rgb_sensor/success_gap_2" not in second.data.metrics  # nor lam-one's figures copied into it
    assert "train/loss" in second.data.metrics  # its training figures are (the same model)
    assert client.get_metric_history(first.info.run_id, key) == before
    artifacts = {a.path for a in client.list_artifacts(second.info.run_id)}
    assert {"report.html", "pose_table.json", "metrics.json"} <= artifacts, artifacts
    assert "lam-one-gaps" in Path(client.download_artifacts(second.info.run_id, "report.md")).read_text()
    assert second.info.status == "FINISHED"

    # Evaluation-only params re-run evaluation and what reads it, nothing upstream. Up to date
    # first but for `track`, which always runs (it completes the experiment's MLflow run).
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout) == {"track": ["always changed"]}
    # gt and flip_tta change only what evaluation scores; eval.crop and the depth range
    # also pick the best epoch (validation scores the same region) and retrain.
    params = (repo / "params.yaml").read_text().replace("gt: raw", "gt: filled")
    (repo / "params.yaml").write_text(params.replace("flip_tta: false", "flip_tta: true"))
    # A real repro, not --dry: report depends on evaluate's outputs, not on eval.* (it
    # reads the protocol from metrics.json), so only running evaluate shows it must re-run.
    out = run(["dvc", "repro"], repo).stdout
    assert "Running stage 'evaluate'" in out and "Running stage 'report'" in out, out
    for stage in ("download", "preprocess", "train", "pose_reference", "pose"):
        assert f"Running stage '{stage}'" not in out, out
    assert json.loads((repo / "reports" / "metrics.json").read_text())["protocol"]["gt"] == "filled"


@pytest.mark.serial  # alone: other load makes DVC's own set-up lock stall (docs/faults.md: Parallel queues)
def test_three_queued_experiments_with_two_workers_lose_nothing(repo: Path):
    env = project_env(repo)
    run(["python", "-m", "pipeline.tracking"], repo, env)  # create the store before parallel writers
    names = ["q-lam-0", "q-lam-05", "q-lam-1"]
    for name, lam in zip(names, ("0", "0.5", "1"), strict=True):
        run(["dvc", "exp", "run", "--queue", "-n", name, *set_args([*TINY_SET, f"loss.lambda={lam}"])], repo, env)
    run(["dvc", "queue", "start", "-j", "2"], repo, env)
    deadline = time.time() + 480
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    status = run(["dvc", "queue", "status"], repo, env).stdout
    assert "Failed" not in status, _failure_report(repo, env, status)
    records = _exp_records(json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout))
    runs, client = _mlflow_runs(repo)
    for name in names:
        assert name in records, f"{name} missing: {status}"
        _, metrics = _params_and_metrics(records[name])
        assert metrics["abs_rel"] > 0 and metrics["mlflow_run_id"]
        assert name in runs and "test/abs_rel" in runs[name].data.metrics
        assert runs[name].info.status == "FINISHED"
        assert metrics["mlflow_run_id"] == runs[name].info.run_id
        assert {"report.html", "metrics.json"} <= {a.path for a in client.list_artifacts(runs[name].info.run_id)}


def _failure_report(repo: Path, env: dict[str, str], status: str) -> str:
    """`dvc queue status`, then `dvc queue logs` of each failed task and the celery worker logs.

    A task that fails before its first stage has no `dvc queue logs`; the worker's own
    log (`.dvc/tmp/exps/celery/dvc-exp-worker-*.out`) then says why.
    """
    parts = [status]
    for line in status.splitlines():
        fields = line.split()
        if fields and fields[-1] == "Failed":
            logs = run(["dvc", "queue", "logs", fields[0]], repo, env, check=False)
            parts.append(f"--- dvc queue logs {fields[0]}:\n{logs.stdout}{logs.stderr}")
    for out in sorted((repo / ".dvc" / "tmp" / "exps" / "celery").glob("*.out")):
        parts.append(f"--- {out.name} (last 4000 chars):\n{out.read_text(errors='replace')[-4000:]}")
    return "\n".join(parts)


def test_make_demo_is_an_experiment_and_leaves_params_alone(repo: Path):
    before = {f: (repo / f).read_bytes() for f in ("params.yaml", "dvc.yaml")}
    env = project_env(repo, DEMO_EXTRA=" ".join(TINY_SET))
    out = run(["bash", "scripts/demo.sh"], repo, env).stdout
    assert "reports/report.html" in out
    assert {f: (repo / f).read_bytes() for f in before} == before
    assert run(["git", "status", "--porcelain"], repo, env).stdout == ""  # the outputs are all git-ignored
    assert (repo / "reports" / "report.html").stat().st_size > 0
    records = _exp_records(json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout))
    demo = [n for n in records if n.startswith("demo-")]
    assert demo, sorted(records)
    params, _ = _params_and_metrics(records[demo[0]])
    assert params["data"]["source"] == "synthetic"


def test_dvc_repro_download_and_preprocess_on_synthetic_data(repo: Path):
    params = (repo / "params.yaml").read_text()
    params = params.replace("source: nyudv2", "source: synthetic").replace("n_images: 96", "n_images: 8")
    (repo / "params.yaml").write_text(params.replace("height: 240", "height: 48").replace("width: 320", "width: 64"))
    out = run(["dvc", "repro", "preprocess"], repo).stdout
    assert "Running stage 'download'" in out and "Running stage 'preprocess'" in out
    for name in ("train.h5", "val.h5", "test.h5", "summary.json"):
        assert (repo / "data" / "processed" / name).stat().st_size > 0
    lock = (repo / "dvc.lock").read_text()
    assert "download:" in lock and "preprocess:" in lock and "train:" not in lock
    assert "Running stage" not in run(["dvc", "repro", "preprocess"], repo).stdout  # up to date now


def test_renderer_or_synthetic_param_edits_never_download_the_real_file_again(repo: Path, tmp_path: Path):
    import hashlib

    labeled, splits = make_tiny_nyu(tmp_path / "src", n=4, n_test=2)
    files = {"/labeled.mat": labeled.read_bytes(), "/splits.mat": splits.read_bytes()}
    with LocalHTTPServer(files, lifetime_s=300) as srv:
        raw = yaml.safe_load((repo / "params.yaml").read_text())
        raw["data"].update(
            url=srv.url("/labeled.mat"),
            splits_url=srv.url("/splits.mat"),
            size=len(files["/labeled.mat"]),
            sha256=hashlib.sha256(files["/labeled.mat"]).hexdigest(),
            splits_sha256=hashlib.sha256(files["/splits.mat"]).hexdigest(),
        )
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        run(["dvc", "repro", "download"], repo)
        fetched = [r.target for r in srv.requests]
        assert fetched.count("/labeled.mat") == 1, fetched
        # Renderer code and synthetic-only params are deps of download (the synthetic
        # source needs them); with a real source they must not cost a 2.97 GB download.
        renderer = repo / "pipeline" / "synthetic" / "textures.py"
        renderer.write_text(renderer.read_text() + "\n# an edit to the renderer\n")
        raw["data"]["synthetic"]["n_images"] += 1
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        run(["dvc", "repro", "download"], repo)
        assert [r.target for r in srv.requests] == fetched, "the labeled file was fetched again"
    assert (repo / "data" / "raw" / "nyu_depth_v2_labeled.mat").read_bytes() == files["/labeled.mat"]
    assert json.loads(run(["dvc", "status", "download", "--json"], repo).stdout) == {}
