"""MLflow tracking against temporary sqlite stores: URIs, runs, params, metrics, artifacts, failures."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from pipeline.config import Params, load_params
from pipeline.tracking import Tracker, init_store, redact_uri, resume_run, start_run, tracking_uri
from pipeline.tracking import store as store_mod
from pipeline.tracking.__main__ import main as init_main
from tests.conftest import model_params, shrunk_params

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "test-exp"
ENV_VARS = (
    "MLFLOW_TRACKING_URI",
    "DVC_ROOT",
    "DVC_EXP_NAME",
    "DVC_EXP_BASELINE_REV",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # nothing MLflow writes relative to cwd may leak into the repo


@pytest.fixture
def params() -> Params:
    # System metrics off: their thread would outlive tests that never end their run (tests/test_tracking_ui.py).
    return shrunk_params(mlflow={"enabled": True, "experiment": EXPERIMENT, "system_metrics": False})


@pytest.fixture
def root(tmp_path, template_db) -> Path:
    """A repo root holding an initialised (experiment-less) sqlite store."""
    r = tmp_path / "repo"
    r.mkdir()
    shutil.copyfile(template_db, r / "mlflow.db")
    return r


def client_for(root: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def tracking_warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name.startswith("pipeline.tracking") and r.levelname == "WARNING"
    ]


def test_tracking_uri_env_wins_then_dvc_root_then_given_root(monkeypatch, tmp_path):
    given, dvc_root = tmp_path / "given", tmp_path / "dvcroot"
    assert tracking_uri(given) == f"sqlite:///{given.resolve()}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", str(dvc_root))
    assert tracking_uri(given) == f"sqlite:///{dvc_root.resolve()}/mlflow.db"
    # A relative sqlite path would live in DVC's temporary experiment copy: anchor it at the root.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///sub/t.db")
    assert tracking_uri(given) == f"sqlite:///{dvc_root.resolve()}/sub/t.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.org:5000")
    assert tracking_uri(given) == "http://example.org:5000"
    monkeypatch.delenv("DVC_ROOT")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"  # cwd


def test_redact_uri_strips_credentials():
    assert redact_uri("http://alice:s3cret@host:5000/p?token=t&a=1") == "http://host:5000/p?a=1"
    assert redact_uri("postgresql://u:pw@db/mlflow?sslmode=require") == "postgresql://db/mlflow?sslmode=require"
    assert redact_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"


def test_init_store_creates_experiment_once_under_dvc_root(monkeypatch, root, tmp_path, params):
    dvc_root = root  # a fresh store's creation is covered by the two-process test below
    monkeypatch.setenv("DVC_ROOT", str(dvc_root))  # as in a queued experiment's temp copy
    first = init_store(params, tmp_path / "temp-copy")
    second = init_store(params, tmp_path / "temp-copy")
    assert first is not None and first == second
    assert (dvc_root / "mlflow.db").is_file() and not (tmp_path / "temp-copy").exists()
    exps = [e for e in client_for(dvc_root).search_experiments() if e.name == EXPERIMENT]
    assert len(exps) == 1
    assert exps[0].artifact_location == (dvc_root.resolve() / "mlartifacts" / EXPERIMENT).as_uri()


def test_start_run_name_tags_and_all_params(monkeypatch, root, params):
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lamb")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123abcd" * 5)
    tracker = start_run(params, root)
    tracker.set_tags({"device": "cpu"})
    tracker.end()
    run = client_for(root).get_run(tracker.run_id)
    assert run.info.run_name == "brisk-lamb" and run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["dvc.exp_name"] == "brisk-lamb" and tags["dvc.baseline_rev"] == "0123abcd" * 5
    assert tags["mlflow.source.git.commit"] == "0123abcd" * 5
    assert tags["data.source"] == params.data.source and tags["device"] == "cpu"
    assert tags["torch_version"] == torch.__version__
    assert run.data.params == {k: str(v) for k, v in params.to_flat_dict().items()}
    assert run.data.params["loss.lambda"] == str(params.loss.lam)


def test_default_run_name_and_git_commit_of_root(root, params):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    tracker = start_run(params, root)
    run = client_for(root).get_run(tracker.run_id)
    assert run.data.tags["mlflow.source.git.commit"] == head
    assert run.info.run_name.startswith(f"{params.data.source}-{params.loss.name}-lam{params.loss.lam:g}-")


def test_secrets_never_reach_the_store(root, params):
    tracker = start_run(params, root)
    tracker.log_params({"db.password": "hunter2", "data.mirror": "https://bob:pw-123@host/x", "ok.key": 1})
    tracker.set_tags({"api_token": "tok-456"})
    tracker.end()
    logged = client_for(root).get_run(tracker.run_id).data
    assert logged.params["ok.key"] == "1"
    assert "db.password" not in logged.params and "api_token" not in logged.tags
    assert logged.params["data.mirror"] == "https://host/x"  # a URL is kept without its credentials
    raw = (root / "mlflow.db").read_bytes()
    assert b"hunter2" not in raw and b"pw-123" not in raw and b"tok-456" not in raw


def test_metric_history_has_epoch_steps_in_few_batches(monkeypatch, root, params):
    calls = []
    original = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, *a, **k: (calls.append(k), original(self, *a, **k)))
    tracker = start_run(params, root)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_abs_rel": 0.5 - 0.001 * e, "lr": 1e-3} for e in range(1, 401)]
    calls.clear()
    tracker.log_metrics_history(rows)
    assert len(calls) == 2  # 1200 values, at most 1000 per request
    history = client_for(root).get_metric_history(tracker.run_id, "val/abs_rel")
    got = sorted((m.step, m.value) for m in history)
    assert got == [(r["epoch"], pytest.approx(r["val_abs_rel"])) for r in rows]
    assert set(client_for(root).get_run(tracker.run_id).data.metrics) == {"train/loss", "val/abs_rel", "train/lr"}


def test_resume_run_reopens_the_same_run(root, params, tmp_path):
    run_id_file = tmp_path / "models" / "mlflow_run.json"
    train = start_run(params, root)
    train.log_metrics_history([{"epoch": 1, "train_loss": 0.7}, {"epoch": 2, "train_loss": 0.4}])
    train.write_run_id(run_id_file)
    train.end()
    saved = json.loads(run_id_file.read_text())
    assert saved == {"run_id": train.run_id, "experiment_id": train._experiment_id, "tracking_uri": tracking_uri(root)}

    evaluate = resume_run(params, run_id_file, root)
    assert evaluate.run_id == train.run_id
    assert client_for(root).get_run(train.run_id).info.status == "RUNNING"
    evaluate.log_metrics({"abs_rel": 0.12, "delta1": 0.8, "note": "not a number"})
    evaluate.end()
    run = client_for(root).get_run(train.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"train/loss": 0.4, "test/abs_rel": 0.12, "test/delta1": 0.8}


def test_resume_run_changed_param_keeps_first_value_and_stays_active(root, params, tmp_path, caplog):
    train = start_run(params, root)
    train.write_run_id(tmp_path / "run.json")
    evaluate = resume_run(params, tmp_path / "run.json", root)
    evaluate.log_params({"loss.lambda": 0.9, "eval.extra": 3})
    assert evaluate.active and any("immutable" in w for w in tracking_warnings(caplog))
    evaluate.log_metrics({"abs_rel": 0.2})
    data = client_for(root).get_run(train.run_id).data
    assert data.params["loss.lambda"] == str(params.loss.lam) and data.params["eval.extra"] == "3"
    assert data.metrics["test/abs_rel"] == 0.2


@pytest.mark.parametrize("content", [None, '{"run_id": null}', '{"run_id": "0123456789abcdef0123456789abcdef"}'])
def test_resume_run_without_a_usable_run_id_starts_a_new_run(root, params, tmp_path, caplog, content):
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    tracker = resume_run(params, path, root)
    assert tracker.run_id is not None and tracker.run_id != "0123456789abcdef0123456789abcdef"
    assert client_for(root).get_run(tracker.run_id).data.params["loss.name"] == params.loss.name
    assert len(tracking_warnings(caplog)) >= 1


def test_artifacts_and_model_land_under_the_roots_mlartifacts(root, params, tmp_path):
    from pipeline.io import sha256_file
    from pipeline.model import UNet, load_model, save_model

    net = UNet(model_params(depth=1, norm="none", dropout=0.0)).eval()
    model = tmp_path / "model.pt"
    save_model(model, net, {"epoch": 3})
    figs = tmp_path / "figures"
    figs.mkdir()
    (figs / "a.png").write_bytes(b"png")
    (tmp_path / "report.md").write_text("# report")
    tracker = start_run(params, root)
    tracker.log_model(model)
    tracker.log_artifacts(figs, "figures")
    tracker.log_artifact(tmp_path / "report.md")
    tracker.log_artifact(tmp_path / "missing.txt")  # warns, does not disable
    assert tracker.active
    arts = root / "mlartifacts" / EXPERIMENT / tracker.run_id / "artifacts"
    assert {f.path for f in client_for(root).list_artifacts(tracker.run_id, "model")} == {
        "model/model.pt",
        "model/README.txt",
    }
    # The logged copy is the checkpoint itself and loads the way its README says.
    digest = sha256_file(model)
    assert sha256_file(arts / "model" / "model.pt") == digest
    assert client_for(root).get_run(tracker.run_id).data.tags["model_sha256"] == digest
    readme = (arts / "model" / "README.txt").read_text()
    assert "from pipeline.model import load_model" in readme and digest in readme
    loaded, meta = load_model(arts / "model" / "model.pt")
    x = torch.rand(1, 3, 16, 16)  # (B, 3, H, W)
    assert meta["epoch"] == 3 and torch.equal(loaded(x), net(x))
    assert (arts / "figures" / "a.png").read_bytes() == b"png" and (arts / "report.md").is_file()


def exercise(tracker: Tracker, tmp_path: Path) -> None:
    """Calls every Tracker method once."""
    (tmp_path / "f.txt").write_text("x")
    tracker.log_params({"a": 1})
    tracker.log_metrics({"m": 1.0}, step=1)
    tracker.log_metrics_history([{"epoch": 1, "m": 1.0}])
    tracker.log_artifact(tmp_path / "f.txt")
    tracker.log_artifacts(tmp_path)
    tracker.log_model(tmp_path / "f.txt")
    tracker.log_servable_model(tmp_path / "f.txt", "some-model", step=1)
    tracker.log_inputs([])
    tracker.log_splits(shrunk_params(), tmp_path, ("train",))
    tracker.log_val_panels(torch.nn.Identity(), tmp_path / "val.h5", 2, step=1)
    tracker.start_system_metrics(1.0)
    tracker.set_tags({"t": "v"})
    tracker.end()


def test_disabled_tracking_is_a_no_op_that_creates_nothing(tmp_path, params):
    off = dataclasses.replace(params, mlflow=dataclasses.replace(params.mlflow, enabled=False))
    root = tmp_path / "repo"
    root.mkdir()
    assert init_store(off, root) is None
    tracker = start_run(off, root)
    exercise(tracker, tmp_path)
    tracker.write_run_id(root / "run.json")
    assert resume_run(off, root / "run.json", root).run_id is None
    assert json.loads((root / "run.json").read_text()) == {"run_id": None, "experiment_id": None, "tracking_uri": None}
    assert sorted(p.name for p in root.iterdir()) == ["run.json"]


def test_unreachable_server_warns_once_and_keeps_credentials_out(monkeypatch, tmp_path, params, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    tracker = start_run(params, tmp_path)
    assert tracker.run_id is None and not tracker.active
    exercise(tracker, tmp_path)
    tracker.write_run_id(tmp_path / "run.json")
    warnings = tracking_warnings(caplog)
    assert len(warnings) == 1 and "127.0.0.1:9" in warnings[0]
    text = (tmp_path / "run.json").read_text()
    assert json.loads(text)["tracking_uri"] == "http://127.0.0.1:9" and "s3cret" not in text and "alice" not in text
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


def test_first_request_to_a_server_is_tried_once(monkeypatch, tmp_path, params):
    """Without the user's own settings, the health check must not wait through MLflow's retries."""
    seen = {}

    def fake_get(self, name):
        seen.update({k: store_mod.os.environ.get(k) for k in store_mod.HTTP_CHECK_ENV})
        raise ConnectionError("refused")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", fake_get)
    assert start_run(params, tmp_path).run_id is None
    assert seen == store_mod.HTTP_CHECK_ENV
    assert not any(k in store_mod.os.environ for k in store_mod.HTTP_CHECK_ENV)  # restored afterwards


def test_corrupt_sqlite_file_warns_and_is_left_alone(tmp_path, params, caplog):
    garbage = b"this is not a sqlite database\n" * 200
    (tmp_path / "mlflow.db").write_bytes(garbage)
    tracker = start_run(params, tmp_path)
    assert tracker.run_id is None
    exercise(tracker, tmp_path)
    assert len(tracking_warnings(caplog)) == 1
    assert (tmp_path / "mlflow.db").read_bytes() == garbage


def test_locked_sqlite_file_warns_then_recovers(root, params, caplog):
    params = dataclasses.replace(params, mlflow=dataclasses.replace(params.mlflow, lock_wait_s=0.2))
    holder = sqlite3.connect(root / "mlflow.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        tracker = start_run(params, root)
        assert time.monotonic() - t0 < 10  # waited mlflow.lock_wait_s, not the default 20 s
        assert tracker.run_id is None and len(tracking_warnings(caplog)) == 1
    finally:
        holder.rollback()
        holder.close()
    assert start_run(params, root).run_id is not None


def test_write_failure_mid_run_warns_once_and_degrades(monkeypatch, root, params, caplog):
    tracker = start_run(params, root)

    def broken(self, *a, **k):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(MlflowClient, "log_batch", broken)
    tracker.log_metrics({"a": 1.0})
    tracker.log_metrics({"b": 2.0})
    tracker.set_tags({"c": "d"})
    tracker.end()
    assert not tracker.active and tracker.run_id is not None
    assert len(tracking_warnings(caplog)) == 1 and "disk I/O error" in tracking_warnings(caplog)[0]


def _init_in_child(params: Params, root: str, barrier, results) -> None:
    barrier.wait()  # both processes hit the fresh store at the same moment
    results.put(init_store(params, root))


def test_two_processes_initialising_a_fresh_store_agree(tmp_path, params):
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding sqlite handles
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_init_in_child, args=(params, str(tmp_path), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    ids = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert ids[0] is not None and ids[0] == ids[1]
    assert [e.experiment_id for e in client_for(tmp_path).search_experiments() if e.name == EXPERIMENT] == [ids[0]]
    assert client_for(tmp_path).create_run(ids[0]).info.run_id  # and the store takes writes


def test_cli_initialises_the_store_of_params_yaml(monkeypatch, root, capsys):
    monkeypatch.setenv("DVC_ROOT", str(root))
    assert init_main([str(REPO / "params.yaml")]) == 0
    experiment = load_params(REPO / "params.yaml").mlflow.experiment
    assert f"'{experiment}'" in capsys.readouterr().out
    assert client_for(root).get_experiment_by_name(experiment) is not None
