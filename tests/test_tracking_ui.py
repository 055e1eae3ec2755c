"""What the MLflow UI is given, piece by piece (no training here).

Metric keys, the experiment's kind and URL, dataset sources, depth panels, and the pyfunc
model's input checks.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.colours import DEPTH_CMAP, ERROR_CMAP, ERROR_VMAX, colourise
from pipeline.config import Params
from pipeline.metrics import METRIC_NAMES
from pipeline.model import UNet
from pipeline.tracking import panels, start_run
from pipeline.tracking.__main__ import main as cli_main
from pipeline.tracking.__main__ import runs_table_url
from pipeline.tracking.datasets import dataset_source
from pipeline.tracking.names import SECTIONS, mlflow_key
from pipeline.tracking.pyfunc_model import as_images
from pipeline.tracking.store import EXPERIMENT_KIND
from pipeline.training.runlog import COLUMNS
from tests.conftest import REPO, model_params, shrunk_params

KIND = "mlflow.experimentKind"


@pytest.fixture
def root(tmp_path: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(template_db, tmp_path / "mlflow.db")
    return tmp_path


def tracked_params(**mlflow: object) -> Params:
    return shrunk_params(mlflow={"enabled": True, "experiment": "ui-test", "system_metrics": False, **mlflow})


# ---- metric keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("train_loss", "train/loss"),
        ("lr", "train/lr"),
        ("images_per_s", "train/images_per_s"),
        ("seconds", "train/epoch_seconds"),
        ("val_loss", "val/loss"),
        ("val_abs_rel", "val/abs_rel"),
        ("abs_rel", "test/abs_rel"),
        ("delta1", "test/delta1"),
        ("baseline_rmse", "baseline/rmse"),
        ("system/cpu_utilization_percentage", "system/cpu_utilization_percentage"),
    ],
)
def test_metric_names_map_to_sectioned_keys(name: str, key: str):
    assert mlflow_key(name) == key


def test_every_logged_name_lands_in_a_section():
    names = [c for c in COLUMNS if c != "epoch"] + list(METRIC_NAMES) + [f"baseline_{m}" for m in METRIC_NAMES]
    keys = [mlflow_key(n) for n in names]
    assert all(k.split("/")[0] in SECTIONS for k in keys), keys
    assert len(set(keys)) == len(keys)  # no two names collide


# ---- the experiment and its URL -----------------------------------------------------------------


def test_runs_table_url_opens_the_model_training_view():
    url = runs_table_url("http://127.0.0.1:5000/", "7")
    assert url == "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"


def test_an_existing_experiment_gets_the_kind_once_and_a_chosen_kind_is_kept(root: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    plain = client.create_experiment("ui-test")  # made before this pipeline tagged experiments
    chosen = client.create_experiment("someone-elses", tags={KIND: "genai_development"})
    start_run(tracked_params(), root).end()
    start_run(tracked_params(experiment="someone-elses"), root).end()
    assert client.get_experiment(plain).tags[KIND] == EXPERIMENT_KIND[KIND] == "custom_model_development"
    assert client.get_experiment(chosen).tags[KIND] == "genai_development"


def test_cli_creates_a_custom_model_experiment_and_prints_its_runs_table(root: Path, capsys, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(root))
    assert cli_main([str(REPO / "params.yaml"), "--ui-url", "http://127.0.0.1:5000"]) == 0
    out = capsys.readouterr().out
    exp = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db").get_experiment_by_name("nyu-depth-unet")
    assert exp.tags[KIND] == "custom_model_development"
    assert f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning" in out


# ---- dataset sources ---------------------------------------------------------------------------


def test_dataset_source_is_the_url_without_credentials_a_path_or_the_renderer():
    base = shrunk_params()
    nyu = dataclasses.replace(base.data, source="nyudv2", url=["https://bob:pw@host/nyu.mat?token=t", "/b.mat"])
    assert dataset_source(dataclasses.replace(base, data=nyu)) == ("http", {"url": "https://host/nyu.mat"})
    local = dataclasses.replace(nyu, url="/data/nyu.mat")
    assert dataset_source(dataclasses.replace(base, data=local)) == ("local", {"uri": "/data/nyu.mat"})
    kind, source = dataset_source(base)  # synthetic
    assert kind == "code" and source["tags"]["seed"] == str(base.data.synthetic.seed)


# ---- depth panels ------------------------------------------------------------------------------


def _colour(value: float, cmap: str, vmax: float) -> np.ndarray:
    return colourise(np.array([[value]]), cmap, vmax)[0, 0]


def test_colourise_is_a_fixed_scale_with_black_holes():
    values = np.ma.masked_array([[0.0, 5.0, 10.0, 30.0, np.nan]], mask=[[0, 0, 0, 0, 0]])
    values[0, 0] = np.ma.masked
    rgb = colourise(values, DEPTH_CMAP, 10.0)  # (1, 5, 3)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 5, 3)
    assert (rgb[0, 0] == 0).all() and (rgb[0, 4] == 0).all()  # masked and NaN: black
    assert (rgb[0, 3] == rgb[0, 2]).all() and not (rgb[0, 1] == rgb[0, 2]).all()  # beyond vmax saturates


def test_panels_draw_each_image_on_the_same_fixed_scale():
    h, w = 8, 12
    gt = np.full((2, h, w), 4.0, np.float32)
    gt[1] = 9.0  # another image with another range: a depth keeps its colour
    gt[0, 0, 0] = 0.0  # a hole
    pred = np.full((2, h, w), 4.0, np.float32)
    rgb = np.zeros((2, h, w, 3), np.uint8)
    image = panels.render_panels(panels.PanelImages(rgb=rgb, gt=gt), pred)
    gap = panels.GAP
    assert image.shape == (2 * (h + gap) + panels.LEGEND_H, 4 * w + 3 * gap, 3)

    def tile(row: int, col: int) -> np.ndarray:
        top, left = row * (h + gap), col * (w + gap)
        return image[top : top + h, left : left + w]

    four = _colour(4.0, DEPTH_CMAP, panels.PANEL_MAX_DEPTH)
    assert (tile(0, 1)[1:, 1:] == four).all() and (tile(0, 2) == four).all() and (tile(1, 2) == four).all()
    assert (tile(0, 1)[0, 0] == 0).all() and (tile(0, 3)[0, 0] == 0).all()  # the hole is black in gt and error
    assert (tile(0, 3)[1:, 1:] == _colour(0.0, ERROR_CMAP, ERROR_VMAX)).all()  # exact: the error scale's bottom
    assert (tile(1, 3) == _colour(5 / 9, ERROR_CMAP, ERROR_VMAX)).all()  # 56% off: saturated at ERROR_VMAX


def test_panel_images_are_evenly_spaced_and_the_net_keeps_its_mode():
    assert panels.panel_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert panels.panel_indices(2, 4).tolist() == [0, 1]
    net = UNet(model_params(norm="batch")).train()
    images = panels.PanelImages(rgb=np.zeros((2, 32, 48, 3), np.uint8), gt=np.ones((2, 32, 48), np.float32))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pred = panels.predict_panels(net, images)
    assert pred.shape == (2, 32, 48) and net.training  # drawn in eval mode, handed back in train mode
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BatchNorm stats untouched


def test_a_panel_that_cannot_be_drawn_warns_once_and_tracking_goes_on(root: Path, monkeypatch, caplog):
    tracker = start_run(tracked_params(), root)
    monkeypatch.setattr(panels, "load_panel_images", lambda *a: (_ for _ in ()).throw(OSError("val.h5 gone")))
    for step in (1, 2):
        tracker.log_val_panels(torch.nn.Identity(), root / "val.h5", 2, step)
    tracker.log_metrics({"val_loss": 0.5}, step=2)
    assert tracker.active
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "val.h5 gone" in warnings[0]
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    assert client.get_run(tracker.run_id).data.metrics == {"val/loss": 0.5}
    tracker.end()


# ---- the pyfunc model's input ------------------------------------------------------------------


def test_pyfunc_input_takes_one_image_or_a_batch_of_uint8_or_json_integers():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    batch, single = as_images(image)
    assert single and batch.shape == (1, 2, 3, 3) and batch.dtype == np.uint8
    batch, single = as_images(np.stack([image] * 4))
    assert not single and batch.shape == (4, 2, 3, 3)
    from_json = np.array(image.tolist(), dtype=object)  # what a REST request becomes
    assert np.array_equal(as_images(from_json)[0][0], image)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((4, 5), np.uint8), "got (4, 5)"),
        (np.zeros((4, 5, 4), np.uint8), "got (4, 5, 4)"),
        (np.zeros((1, 0, 5, 3), np.uint8), "got (1, 0, 5, 3)"),
        (np.full((4, 5, 3), 0.5, np.float32), "uint8 RGB values 0..255, got float32"),
        (np.full((4, 5, 3), 256), "uint8 RGB values 0..255, got int64"),
        ([[[1, 2, 3]], [[1, 2]]], "of one size"),
    ],
)
def test_pyfunc_input_errors_say_what_the_model_takes(value: object, message: str):
    with pytest.raises(MlflowException, match=message.replace("(", r"\(").replace(")", r"\)")):
        as_images(value)
