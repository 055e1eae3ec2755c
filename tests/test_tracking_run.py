"""One tracked train + evaluate on tiny data, and what a model-training user finds in MLflow.

The module's fixture trains once with MLflow on (a sqlite store in tmp_path) and every
test reads that run: sectioned metrics, dataset inputs, depth panels, system metrics, the
experiment's kind, the logged and registered model, which then loads in a fresh process
without the repository and answers REST requests from `mlflow models serve`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.config import Params
from pipeline.evaluation import evaluate
from pipeline.evaluation.inference import predict_batch, train_resolution
from pipeline.io import md5_file
from pipeline.model import load_model
from pipeline.tracking import registry
from pipeline.tracking.panels import LEGEND_H, PANEL_KEY
from pipeline.training import train as training
from tests.conftest import REPO, SIZE, shrunk_params
from tests.servers import model_server
from tests.train_helpers import make_root

MODEL = "nyu-depth-unet-test"
N_VAL, N_PANELS = 4, 3


@dataclass(frozen=True)
class TrackedRun:
    root: Path
    uri: str
    params: Params
    client: MlflowClient
    run_id: str
    experiment_id: str


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> TrackedRun:
    root = make_root(tmp_path_factory.mktemp("tracked"), n_val=N_VAL)
    shutil.copyfile(template_db, root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    params = shrunk_params(
        mlflow={"enabled": True, "registered_model": MODEL, "system_metrics_interval": 1, "val_images": N_PANELS}
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DVC_ROOT", raising=False)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)  # nothing MLflow writes relative to cwd may land in the repository
        training.run(params, root)
        evaluate.run(params, root, device="cpu")
    run_id = json.loads((root / params.paths.run_id).read_text())["run_id"]
    client = MlflowClient(tracking_uri=uri)
    return TrackedRun(root, uri, params, client, run_id, client.get_run(run_id).info.experiment_id)


def test_metrics_are_grouped_by_section_and_files_keep_their_names(tracked: TrackedRun):
    metrics = tracked.client.get_run(tracked.run_id).data.metrics
    plain = {k for k in metrics if not k.startswith("system/")}
    assert {"train/loss", "train/lr", "train/epoch_seconds", "val/loss", "val/abs_rel"} <= plain
    assert {"test/abs_rel", "test/delta1", "baseline/abs_rel", "baseline/rmse"} <= plain
    assert all(k.split("/")[0] in ("train", "val", "test", "baseline") for k in plain), sorted(plain)
    assert sorted(m.step for m in tracked.client.get_metric_history(tracked.run_id, "val/abs_rel")) == [1, 2]
    evaluation_metrics = json.loads((tracked.root / tracked.params.paths.metrics).read_text())
    assert metrics["test/abs_rel"] == pytest.approx(evaluation_metrics["abs_rel"])
    assert metrics["baseline/abs_rel"] == pytest.approx(evaluation_metrics["baseline"]["abs_rel"])
    header = (tracked.root / tracked.params.paths.train_log).read_text().splitlines()[0].split("\t")
    assert header[:3] == ["epoch", "train_loss", "val_loss"]  # dvc plots reads these names


def test_system_metrics_were_sampled_during_training(tracked: TrackedRun):
    metrics = tracked.client.get_run(tracked.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics and "system/system_memory_usage_megabytes" in metrics


def test_the_experiment_is_a_custom_model_one(tracked: TrackedRun):
    tags = tracked.client.get_experiment(tracked.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_each_split_is_a_dataset_input_with_its_dvc_md5(tracked: TrackedRun):
    inputs = tracked.client.get_run(tracked.run_id).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}
    assert sorted(by_context) == ["test", "train", "val"]
    processed = tracked.root / tracked.params.paths.processed_dir
    for split, ds in by_context.items():
        assert ds.name == "synthetic" and ds.digest == md5_file(processed / f"{split}.h5")
        assert ds.source_type == "code" and json.loads(ds.source)["tags"]["generator"] == "pipeline.synthetic"
        assert json.loads(ds.profile)["images"] == {"train": 8, "val": N_VAL, "test": 2}[split]


def test_depth_panels_are_logged_per_validated_epoch(tracked: TrackedRun):
    arts = tracked.root / "mlartifacts" / tracked.params.mlflow.experiment / tracked.run_id / "artifacts" / "images"
    key = PANEL_KEY.replace("/", "~")  # MLflow's file name for a key with a slash
    pngs = sorted(arts.glob(f"{key}+step+*.png"))
    assert sorted(int(p.name.split("+")[2]) for p in pngs) == [1, 2]  # one per epoch, step = epoch
    assert len(list(arts.glob(f"{key}+step+*+compressed.webp"))) == 2  # the image grid's thumbnails
    from PIL import Image

    h, w = SIZE
    with Image.open(pngs[0]) as im:
        assert im.size == (4 * w + 3 * 2, N_PANELS * (h + 2) + LEGEND_H)  # 4 tiles per image, then the legend
    assert tracked.client.get_run(tracked.run_id).data.tags["mlflow.loggedImages"] == "True"


def test_the_best_model_is_logged_and_registered(tracked: TrackedRun):
    run = tracked.client.get_run(tracked.run_id)
    (output,) = run.outputs.model_outputs
    model = tracked.client.get_logged_model(output.model_id)
    meta = load_model(tracked.root / tracked.params.paths.model)[1]
    assert model.source_run_id == tracked.run_id and output.step == meta["epoch"]
    linked = {m.key: m.value for m in model.metrics if m.step == meta["epoch"]}  # the Models tab's columns
    assert linked["val/abs_rel"] == pytest.approx(meta["val_metrics"]["val_abs_rel"])
    (found,) = tracked.client.search_model_versions(f"name='{MODEL}'")
    version = tracked.client.get_model_version(MODEL, found.version)
    assert str(version.version) == "1" and version.status == "READY" and version.run_id == tracked.run_id
    assert version.source == f"models:/{model.model_id}"  # the logged model, not a copy of its files


def _reference(tracked: TrackedRun, images: np.ndarray) -> np.ndarray:
    model, meta = load_model(tracked.root / tracked.params.paths.model)
    return predict_batch(model, images, train_resolution(meta))


# Run with `python -I` (no PYTHONPATH, no user site) from a folder outside the repository.
# The shared environment can still find `pipeline` through an editable install: take that
# finder away too and check nothing is left, so the model can only use the code it carries.
FRESH_CHILD = """
import importlib.util, json, sys
import numpy as np
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path = [p for p in sys.path if p not in ("", ".", sys.argv[1])]
assert importlib.util.find_spec("pipeline") is None, "the repository's pipeline package is still importable"
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[2])
images = np.load(sys.argv[3])
single, batch = model.predict(images[0]), model.predict(images)
import pipeline
np.savez(sys.argv[4], single=single, batch=batch)
print(json.dumps({"pipeline": pipeline.__file__}))
"""


def test_registered_model_predicts_in_a_fresh_process_without_the_repository(tracked: TrackedRun, tmp_path: Path):
    images = np.random.default_rng(1).integers(0, 256, (2, 45, 61, 3), dtype=np.uint8)  # not the training size
    np.save(tmp_path / "images.npy", images)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DVC_"))}
    env["MLFLOW_TRACKING_URI"] = tracked.uri
    args = [sys.executable, "-I", "-c", FRESH_CHILD, str(REPO), f"models:/{MODEL}/1"]
    proc = subprocess.run([*args, str(tmp_path / "images.npy"), str(tmp_path / "out.npz")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded_from = Path(json.loads(proc.stdout.strip().splitlines()[-1])["pipeline"])
    model_dir = tracked.root / "mlartifacts" / tracked.params.mlflow.experiment / "models"
    assert model_dir in loaded_from.parents  # the code came with the model
    out = np.load(tmp_path / "out.npz")
    assert out["single"].shape == (45, 61) and out["batch"].shape == (2, 45, 61)
    assert out["single"].dtype == np.float32 and out["batch"].dtype == np.float32
    np.testing.assert_allclose(out["batch"], _reference(tracked, images), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["single"], out["batch"][0], rtol=1e-6)  # one image = the batch's first


def test_models_serve_answers_a_rest_request_with_a_depth_map(tracked: TrackedRun, tmp_path: Path):
    images = np.random.default_rng(2).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env["MLFLOW_TRACKING_URI"] = tracked.uri
    with model_server(f"models:/{MODEL}/1", tmp_path, env) as url:
        body = json.dumps({"inputs": images.tolist()}).encode()
        request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            depth = np.asarray(json.loads(response.read())["predictions"], dtype=np.float32)
        bad = urllib.request.Request(f"{url}/invocations", b'{"inputs": [[0.5, 0.5]]}', request.headers)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=60)
    assert depth.shape == (2, 20, 30)
    np.testing.assert_allclose(depth, _reference(tracked, images), rtol=1e-5, atol=1e-6)
    assert err.value.code == 400 and "(H, W, 3)" in err.value.read().decode()  # a bad request, saying why


def test_a_registry_failure_warns_and_keeps_the_logged_model(tracked: TrackedRun, monkeypatch, caplog):
    import mlflow

    def locked(*args, **kwargs):
        raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database is locked")

    monkeypatch.setattr(mlflow, "register_model", locked)
    run = tracked.client.create_run(tracked.experiment_id)
    model_id = registry.log_depth_model(tracked.uri, run.info.run_id, tracked.root / tracked.params.paths.model, 1)
    assert registry.register_or_warn(tracked.uri, model_id, MODEL) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("register the model" in w and "database is locked" in w for w in warnings), warnings
    assert tracked.client.get_logged_model(model_id).source_run_id == run.info.run_id
    assert len(tracked.client.search_model_versions(f"name='{MODEL}'")) == 1  # no new version
