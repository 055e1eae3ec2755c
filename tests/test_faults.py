"""Faults: kill -9 in the middle of each stage, and an MLflow store that is down or locked.

Each test runs the real stage entry points (`python -m stages.<name>`) in a throw-away
workspace (tmp_path holding a params.yaml with the repo's relative paths), kills the
process at a chosen moment with SIGKILL, and checks what is left and that the next run
recovers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.config import params_from_dict
from tests.conftest import SHRUNK, repo_raw, write_params
from tests.fixtures_data import make_processed_dir
from tests.http_server import LocalHTTPServer, Switches
from tests.nyu_fixtures import make_tiny_nyu
from tests.report_fixtures import write_inputs

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _workspace(tmp_path: Path, **sections: dict) -> Path:
    """tmp_path with the repo's params.yaml, `sections` merged in (one level deep)."""
    raw = repo_raw()
    for name, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict):
                raw[name][key].update(value)
            else:
                raw[name][key] = value
    write_params(tmp_path, raw)
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _stage(name: str, ws: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"stages.{name}"], cwd=ws, env=env or _env(), capture_output=True, text=True, timeout=300
    )


def _kill_when(name: str, ws: Path, ready: Callable[[], bool], timeout_s: float = 120) -> None:
    """Starts a stage and SIGKILLs it as soon as `ready()` holds; fails if it ends first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"stages.{name}"], cwd=ws, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
            if proc.poll() is not None:
                pytest.fail(f"stage {name} ended ({proc.returncode}) before the kill point: {proc.stderr.read()}")
            time.sleep(0.01)
        pytest.fail(f"stage {name} never reached the kill point")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_during_download_resumes_and_leaves_no_partial_output(tmp_path: Path):
    labeled_bytes = os.urandom(3 << 20)
    splits_bytes = os.urandom(4096)
    files = {"/nyu.mat": labeled_bytes, "/splits.mat": splits_bytes}
    sw = Switches(chunk_delay_s=0.03)
    with LocalHTTPServer(files, sw, lifetime_s=200) as server:
        data = {
            "url": server.url("/nyu.mat"),
            "splits_url": server.url("/splits.mat"),
            "size": len(labeled_bytes),
            "sha256": hashlib.sha256(labeled_bytes).hexdigest(),
            "splits_sha256": hashlib.sha256(splits_bytes).hexdigest(),
        }
        ws = _workspace(tmp_path, data=data)
        out = ws / "data/raw/nyu_depth_v2_labeled.mat"
        part = out.with_name(out.name + ".part")
        _kill_when("download", ws, lambda: part.exists() and part.stat().st_size > (512 << 10))
        assert not out.exists(), "a partial download reached the output path"
        killed_at = part.stat().st_size
        assert 0 < killed_at < len(labeled_bytes)

        sw.chunk_delay_s = 0.0
        proc = _stage("download", ws)
        assert proc.returncode == 0, proc.stderr
        ranges = [r.range for r in server.requests if r.target == "/nyu.mat" and r.range]
    assert _digest(out) == data["sha256"]
    assert not part.exists()
    assert ranges and int(ranges[-1].removeprefix("bytes=").rstrip("-")) >= killed_at - (64 << 10)


def test_kill_during_preprocess_keeps_the_previous_output(tmp_path: Path):
    ws = _workspace(tmp_path, preprocess={"height": 48, "width": 64, "val_fraction": 0.3})
    make_tiny_nyu(ws / "data/raw", n=40, n_test=10)
    assert _stage("preprocess", ws).returncode == 0
    processed = ws / "data/processed"
    before = {p.name: _digest(p) for p in processed.iterdir()}

    _workspace(tmp_path, preprocess={"height": 96, "width": 128, "val_fraction": 0.3})
    _kill_when("preprocess", ws, lambda: any(ws.glob("data/.processed.*.tmp/train.h5")))
    assert {p.name: _digest(p) for p in processed.iterdir()} == before, "the previous processed data changed"

    proc = _stage("preprocess", ws)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((processed / "summary.json").read_text())["height"] == 96
    assert not list(ws.glob("data/.processed.*")), "staging folders left behind"


def test_kill_during_align_data_keeps_the_previous_sequences(tmp_path: Path):
    align = {**repo_raw()["loss"]["align"], "weight": 1.0, "sequences": 1, "frames": 3, "gaps": [1]}
    ws = _workspace(tmp_path, preprocess={"height": 32, "width": 48}, loss={"align": align})
    assert _stage("align_data", ws).returncode == 0
    out = ws / "data/align_sequences"
    before = {p.relative_to(out): _digest(p) for p in out.rglob("*") if p.is_file()}

    _workspace(tmp_path, loss={"align": {**align, "sequences": 3, "frames": 30}})
    _kill_when("align_data", ws, lambda: any(ws.glob("data/.align_sequences.*.tmp/*/rgb/*.png")))
    assert {p.relative_to(out): _digest(p) for p in out.rglob("*") if p.is_file()} == before

    proc = _stage("align_data", ws)
    assert proc.returncode == 0, proc.stderr
    assert len([p for p in out.iterdir() if p.is_dir()]) == 3
    assert not list(ws.glob("data/.align_sequences.*")), "staging folders left behind"


TRAIN = {"epochs": 5, "batch_size": 4, "warmup_epochs": 0, "device": "cpu", "lr": 0.002}


def test_kill_during_training_resumes_from_the_last_checkpoint(tmp_path: Path):
    ws = _workspace(
        tmp_path,
        preprocess={"height": 64, "width": 96},
        model={"base_channels": 8, "depth": 2},
        train=TRAIN,
        mlflow={"enabled": False},
    )
    make_processed_dir(ws / "data/processed", n_train=24, n_val=4, n_test=2, size=(64, 96))
    last = ws / "models/checkpoints/last.pt"
    _kill_when("train", ws, lambda: last.exists() and last.stat().st_mtime > 0 and _epochs_logged(ws) >= 2)
    done_before = _epochs_logged(ws)
    assert 2 <= done_before < TRAIN["epochs"]

    proc = _stage("train", ws)
    assert proc.returncode == 0, proc.stderr
    assert "resum" in proc.stderr.lower(), proc.stderr
    log = pd.read_csv(ws / "reports/train_log.tsv", sep="\t")
    assert log["epoch"].tolist() == list(range(1, TRAIN["epochs"] + 1))
    assert (ws / "models/model.pt").exists()


def _epochs_logged(ws: Path) -> int:
    try:
        return len(pd.read_csv(ws / "reports/train_log.tsv", sep="\t"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def test_kill_during_report_keeps_the_previous_report(tmp_path: Path):
    raw = repo_raw()
    raw["mlflow"]["enabled"] = False
    write_params(tmp_path, raw)
    params = params_from_dict(raw)
    write_inputs(tmp_path, params, k=6, size=(240, 320))
    assert _stage("report", tmp_path).returncode == 0
    html = tmp_path / params.paths.report_html
    before = _digest(html), _digest(tmp_path / params.paths.report_md)

    _kill_when("report", tmp_path, lambda: any(p.name.startswith(".") for p in (tmp_path / "reports").iterdir()))
    assert (_digest(html), _digest(tmp_path / params.paths.report_md)) == before


def _pipeline_after_preprocess(ws: Path, env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    stages = ("sequences", "train", "evaluate", "pose_reference", "pose", "report", "track")
    return [_stage(name, ws, env) for name in stages]


@pytest.mark.parametrize("fault", ["unreachable", "locked"])
def test_mlflow_down_or_locked_warns_and_the_pipeline_finishes(tmp_path: Path, fault: str):
    ws = _workspace(
        tmp_path,
        preprocess={"height": 32, "width": 48},
        model={"base_channels": 4, "depth": 2},
        train={**TRAIN, "epochs": 1},
        eval={"n_examples": 2},
        mlflow={"lock_wait_s": 2},  # each tracking stage waits this long for the lock, then goes on
        sequences=SHRUNK["sequences"],  # rendered, never the TUM download
        pose=SHRUNK["pose"],
    )
    make_processed_dir(ws / "data/processed")
    if fault == "unreachable":
        env = _env(MLFLOW_TRACKING_URI="http://127.0.0.1:9")
        procs = _pipeline_after_preprocess(ws, env)
    else:
        db = ws / "locked.db"
        sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds the store for the whole run
        try:
            procs = _pipeline_after_preprocess(ws, _env(MLFLOW_TRACKING_URI=f"sqlite:///{db}"))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    for proc in procs:
        assert proc.returncode == 0, proc.stderr
    assert "WARNING" in procs[1].stderr and "mlflow" in procs[1].stderr.lower()  # train's
    for rel in ("models/model.pt", "reports/metrics.json", "reports/report.html", "reports/per_image.csv",
                "reports/pose_metrics.json"):  # fmt: skip
        assert (ws / rel).stat().st_size > 0, rel


def test_truncated_labeled_file_is_a_clear_error_and_writes_nothing(tmp_path: Path):
    ws = _workspace(tmp_path, preprocess={"height": 48, "width": 64})
    labeled, _ = make_tiny_nyu(ws / "data/raw", n=8, n_test=3)
    data = labeled.read_bytes()
    labeled.write_bytes(data[: len(data) // 2])  # an interrupted copy
    proc = _stage("preprocess", ws)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "nyu_depth_v2_labeled.mat" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (ws / "data/processed").exists() and not list(ws.glob("data/.processed*"))
