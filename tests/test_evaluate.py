"""The evaluate stage: protocol params, inference path, baseline, depth bins, outputs, tracking.

Most tests use a stub "model" that reads depth back from the red channel (depth =
red * STEP metres), so the expected metrics follow from the data by construction and
are checked against `pipeline.metrics` run directly on the arrays.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pipeline.config import EvalParams, load_params
from pipeline.data.datasets import SplitWriter, read_split
from pipeline.errors import PipelineError
from pipeline.evaluation.baseline import constant_baseline, train_depth_median
from pipeline.evaluation.depth_bins import depth_bin_edges
from pipeline.evaluation.evaluate import per_scene_type
from pipeline.evaluation.evaluate import run as evaluate
from pipeline.evaluation.formats import BIN_COLUMNS
from pipeline.evaluation.inference import predict_batch
from pipeline.evaluation.protocol import evaluate_model, example_positions
from pipeline.metrics import METRIC_NAMES, depth_metrics, eval_mask
from pipeline.model import UNet, save_model
from tests.conftest import model_params, shrunk_params, shrunk_raw, write_params
from tests.fixtures_data import SCENE_TYPES, make_processed_dir

ROOT = Path(__file__).resolve().parents[1]
STEP = 0.04  # metres per red level: red 25..250 is 1..10 m
H, W = 48, 64  # test resolution of these tests (NYUDv2's is 480x640)


class RedToDepth(nn.Module):
    """Depth read from the red channel, times `scale`, plus `offset` and a left-to-right ramp."""

    def __init__(self, scale: float = 1.0, offset: float = 0.0, ramp: float = 0.0) -> None:
        super().__init__()
        self.scale, self.offset, self.ramp = scale, offset, ramp

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, h, w) -> (B, 1, h, w)
        ramp = self.ramp * torch.linspace(0, 1, x.shape[-1])  # (w,): not mirror-symmetric
        return (x[:, :1] * 255 * STEP) * self.scale + self.offset + ramp


def write_split(path: Path, red: np.ndarray, depth: np.ndarray, raw: np.ndarray) -> Path:
    """A test.h5 with the given red channel (N,H,W) uint8, filled and raw depth (N,H,W) metres."""
    n, h, w = red.shape
    rng = np.random.default_rng(1)
    with SplitWriter(path, n, h, w, "test", "synthetic") as wr:
        for i in range(n):
            rgb = np.stack([red[i], *rng.integers(0, 256, (2, h, w), dtype=np.uint8)], axis=-1)  # (H, W, 3)
            stype = SCENE_TYPES[i % len(SCENE_TYPES)]
            wr.write(i, rgb, depth[i], raw[i], 100 + i, f"{stype}_{i // 2:04d}", stype)
    return path


def red_levels(n: int, lo: int = 25, hi: int = 150, seed: int = 0) -> np.ndarray:
    """(n, H, W) uint8 red levels, i.e. depths lo*STEP..hi*STEP."""
    return np.random.default_rng(seed).integers(lo, hi + 1, (n, H, W)).astype(np.uint8)


def holes(shape: tuple[int, ...], seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < 0.2  # Kinect-like missing pixels


def cfg(**kw) -> EvalParams:
    return dataclasses.replace(shrunk_params().eval, **{"batch_size": 3, "n_examples": 2, **kw})


def close(a: dict[str, float], b: dict[str, float], tol: float = 1e-5) -> bool:
    return all(abs(a[k] - b[k]) <= tol * max(1.0, abs(b[k])) for k in METRIC_NAMES)


def means(df: pd.DataFrame) -> dict[str, float]:
    return {k: float(df[k].mean()) for k in METRIC_NAMES}


def test_perfect_model_at_test_resolution(tmp_path):
    red = red_levels(5)
    depth = red * np.float32(STEP)
    raw = np.where(holes(depth.shape), 0, depth).astype(np.float32)
    test = write_split(tmp_path / "test.h5", red, depth, raw)
    for gt in ("raw", "filled"):
        res = evaluate_model(RedToDepth(), test, cfg(gt=gt), (H, W), baseline_depth=3.0)
        m = means(res.per_image)
        assert m["delta1"] == 1.0 and m["delta3"] == 1.0
        assert m["abs_rel"] < 1e-6 and m["rmse"] < 1e-5 and m["silog"] < 1e-3
        assert len(res.per_image) == 5 and res.eval_hw == (H, W)


def test_perfect_model_through_the_upsampling_path(tmp_path):
    # Constant scenes: the antialiased downsample and bilinear upsample preserve them exactly.
    red = np.broadcast_to(np.array([40, 75, 120, 200], np.uint8)[:, None, None], (4, H, W)).copy()
    depth = red * np.float32(STEP)
    test = write_split(tmp_path / "test.h5", red, depth, depth)
    res = evaluate_model(RedToDepth(), test, cfg(n_examples=4), (H // 2, W // 2), baseline_depth=3.0)
    m = means(res.per_image)
    assert m["delta1"] == 1.0 and m["abs_rel"] < 1e-6
    assert res.examples["pred"].shape == (4, H, W)  # upsampled back to the test resolution
    np.testing.assert_allclose(res.examples["pred"], depth, rtol=1e-6)


def test_gt_raw_and_filled_use_their_own_arrays(tmp_path):
    red = red_levels(4)
    depth = red * np.float32(STEP)
    raw = np.where(holes(depth.shape), 0, 1.5 * depth).astype(np.float32)  # raw 1.5x farther, with holes
    test = write_split(tmp_path / "test.h5", red, depth, raw)
    filled = means(evaluate_model(RedToDepth(), test, cfg(gt="filled"), (H, W), 3.0).per_image)
    on_raw = means(evaluate_model(RedToDepth(), test, cfg(gt="raw"), (H, W), 3.0).per_image)
    assert filled["abs_rel"] < 1e-6 and filled["delta1"] == 1.0
    # |d - 1.5 d| / 1.5 d = 1/3 on every valid raw pixel; holes (0) must not count (they'd give inf).
    assert on_raw["abs_rel"] == pytest.approx(1 / 3, rel=1e-5)
    assert on_raw["delta1"] == 0.0 and on_raw["delta2"] == 1.0  # ratio 1.5: above 1.25, below 1.5625
    assert close(on_raw, depth_metrics(depth, raw))


def test_crop_changes_the_valid_pixels(tmp_path):
    gt_red = red_levels(3, hi=100)
    inside = eval_mask(np.full((H, W), 5.0), 1e-3, 10.0, "eigen")  # (H, W): the Eigen crop at this size
    red = np.where(inside, gt_red, 2 * gt_red).astype(np.uint8)  # the prediction is 2x off outside the crop
    depth = gt_red * np.float32(STEP)
    test = write_split(tmp_path / "test.h5", red, depth, depth)
    eigen = means(evaluate_model(RedToDepth(), test, cfg(crop="eigen", gt="filled"), (H, W), 3.0).per_image)
    none = means(evaluate_model(RedToDepth(), test, cfg(crop="none", gt="filled"), (H, W), 3.0).per_image)
    assert eigen["abs_rel"] < 1e-6 and eigen["delta1"] == 1.0
    assert none["abs_rel"] == pytest.approx(1 - inside.mean(), rel=1e-5)  # |2d - d| / d = 1 outside


def test_flip_tta_averages_with_the_mirrored_prediction(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1), nn.Softplus()).eval()  # not mirror-symmetric
    rgb = np.random.default_rng(0).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255  # (B, 3, H, W)
    with torch.no_grad():
        plain, mirrored = net(x)[:, 0], net(x.flip(-1)).flip(-1)[:, 0]  # (B, H, W)
    np.testing.assert_allclose(predict_batch(net, rgb, (H, W), flip_tta=False), plain.numpy(), rtol=1e-5)
    tta = predict_batch(net, rgb, (H, W), flip_tta=True)
    np.testing.assert_allclose(tta, (0.5 * (plain + mirrored)).numpy(), rtol=1e-5)
    assert not np.allclose(tta, plain.numpy(), rtol=1e-3)

    # End to end: a ramp of 2 m across the image averages to a constant +1 m with the flip.
    red = red_levels(3)
    depth = red * np.float32(STEP)
    test = write_split(tmp_path / "test.h5", red, depth, depth)
    on = means(evaluate_model(RedToDepth(ramp=2.0), test, cfg(flip_tta=True), (H, W), 3.0).per_image)
    off = means(evaluate_model(RedToDepth(ramp=2.0), test, cfg(flip_tta=False), (H, W), 3.0).per_image)
    assert close(on, depth_metrics(depth + 1.0, depth))
    ramp = 2.0 * np.linspace(0, 1, W, dtype=np.float32)
    assert close(off, depth_metrics(depth + ramp, depth))


def test_predictions_are_clipped_to_the_range(tmp_path):
    red = red_levels(3)
    depth = red * np.float32(STEP)
    test = write_split(tmp_path / "test.h5", red, depth, depth)
    c = cfg(max_depth=8.0, n_examples=3)
    far = evaluate_model(RedToDepth(scale=0.0, offset=50.0), test, c, (H, W), 3.0)
    assert far.examples["pred"].max() == pytest.approx(8.0)
    # The depth bins score the clipped prediction: rmse = sqrt(mean((8 - g)^2)) per bin.
    mask = eval_mask(depth, c.min_depth, c.max_depth, "eigen")
    g = depth[mask].astype(np.float64)
    bins = np.digitize(g, depth_bin_edges(8.0)[1:-1])
    for _, row in far.error_by_depth[far.error_by_depth.n_pixels > 0].iterrows():
        sel = g[bins == int(row.depth_bin_lo / 0.5)]
        assert row.rmse == pytest.approx(np.sqrt(np.mean((8.0 - sel) ** 2)), rel=1e-6)
    near = evaluate_model(RedToDepth(scale=0.0, offset=-1.0), test, c, (H, W), 3.0)
    assert near.examples["pred"].min() == pytest.approx(c.min_depth)
    assert np.isfinite(near.per_image[list(METRIC_NAMES)].to_numpy()).all()  # logs of the clipped value


class PoisonedPixels(nn.Module):
    """A perfect red-to-depth model whose image 1 has one NaN pixel and image 2 one +inf pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = RedToDepth()(x).clone()  # (B, 1, h, w)
        y[1, 0, H // 2, W // 2], y[2, 0, H // 3, W // 3] = float("nan"), float("inf")
        return y


def test_nonfinite_predictions_are_counted_and_every_metric_keeps_every_image(tmp_path):
    red = red_levels(3)
    depth = red * np.float32(STEP)
    test = write_split(tmp_path / "test.h5", red, depth, depth)
    res = evaluate_model(PoisonedPixels(), test, cfg(batch_size=3, crop="none"), (H, W), 3.0)
    assert res.nonfinite_pixels == 2
    assert np.isfinite(res.per_image[list(METRIC_NAMES)].to_numpy()).all()  # no image dropped from any mean
    # Image 1's NaN pixel is scored as eval.min_depth: exactly one pixel off out of H*W.
    assert res.per_image.delta1[1] == pytest.approx(1 - 1 / (H * W))
    assert res.per_image.delta1[0] == 1.0


def test_error_by_depth_matches_a_direct_computation(tmp_path):
    red = red_levels(5, lo=10, hi=240, seed=3)  # 0.4 .. 9.6 m: most bins populated
    depth = red * np.float32(STEP)
    raw = np.where(holes(depth.shape), 0, depth).astype(np.float32)
    test = write_split(tmp_path / "test.h5", red, depth, raw)
    res = evaluate_model(RedToDepth(scale=1.1, offset=-0.2), test, cfg(), (H, W), 3.0)
    table = res.error_by_depth
    assert tuple(table.columns) == BIN_COLUMNS
    assert len(table) == 20 and table.depth_bin_lo.iloc[1] == 0.5 and table.depth_bin_hi.iloc[-1] == 10.0
    mask = eval_mask(raw, 1e-3, 10.0, "eigen")
    assert table.n_pixels.sum() == mask.sum()
    p, g = np.clip(depth * 1.1 - 0.2, 1e-3, 10.0)[mask].astype(np.float64), raw[mask].astype(np.float64)
    for b, row in table.iterrows():
        sel = (g >= row.depth_bin_lo) & (g < row.depth_bin_hi)
        assert row.n_pixels == sel.sum()
        if sel.any():
            assert row.abs_rel == pytest.approx(np.mean(np.abs(p[sel] - g[sel]) / g[sel]), rel=1e-4), b
            assert row.rmse == pytest.approx(np.sqrt(np.mean((p[sel] - g[sel]) ** 2)), rel=1e-4), b
            ratio = np.maximum(p[sel] / g[sel], g[sel] / p[sel])
            assert row.delta1 == pytest.approx(np.mean(ratio < 1.25), abs=1e-6), b


def test_examples_are_evenly_spaced_rows_of_the_test_set(tmp_path):
    assert example_positions(654, 6).tolist() == [0, 131, 261, 392, 522, 653]
    assert example_positions(3, 6).tolist() == [0, 1, 2]
    assert example_positions(5, 0).tolist() == []
    red = red_levels(7)
    depth = red * np.float32(STEP)
    raw = np.where(holes(depth.shape), 0, depth).astype(np.float32)
    test = write_split(tmp_path / "test.h5", red, depth, raw)
    ex = evaluate_model(RedToDepth(), test, cfg(n_examples=3), (H, W), 3.0).examples  # batches of 3: spans them
    full = read_split(test)
    rows = [0, 3, 6]
    assert ex["index"].tolist() == full.index[rows].tolist()
    assert ex["scene"].tolist() == full.scene[rows].tolist()
    np.testing.assert_array_equal(ex["rgb"], full.rgb[rows])
    np.testing.assert_array_equal(ex["gt"], full.raw_depth[rows])  # the protocol's gt (raw by default)
    assert ex["pred"].dtype == np.float32 and ex["pred"].shape == (3, H, W)


def test_baseline_median_and_its_sources(tmp_path):
    proc = make_processed_dir(tmp_path / "processed", n_train=5)
    train = read_split(proc / "train.h5").depth
    exact = np.median(train[eval_mask(train, 1e-3, 10.0, "none")])
    assert abs(train_depth_median(proc / "train.h5", 1e-3, 10.0, batch_size=2) - exact) <= 5e-4
    depth, source = constant_baseline(proc, 1e-3, 10.0)
    assert abs(depth - exact) <= 5e-4 and "train.h5" in source
    assert str(tmp_path) not in source  # metrics.json must not depend on where the repository lives

    # The baseline is scored on the same protocol as the model.
    red = red_levels(3)
    depth_t = red * np.float32(STEP)
    raw = np.where(holes(depth_t.shape), 0, depth_t).astype(np.float32)
    test = write_split(tmp_path / "test.h5", red, depth_t, raw)
    res = evaluate_model(RedToDepth(), test, cfg(), (H, W), baseline_depth=2.5)
    raw = read_split(test).raw_depth  # as stored (whole millimetres): some pixels sit on a delta threshold
    assert close(means(res.baseline_per_image), depth_metrics(np.full_like(raw, 2.5), raw))


def test_per_scene_type_table():
    per_image = pd.DataFrame({"scene_type": ["a", "b", "a"], **{k: [1.0, 5.0, 3.0] for k in METRIC_NAMES}})
    table = per_scene_type(per_image).set_index("scene_type")
    assert table.loc["a", "n_images"] == 2 and table.loc["b", "n_images"] == 1
    assert all(table.loc["a", k] == 2.0 for k in METRIC_NAMES)


# ---- the stage end to end -------------------------------------------------------------


def make_project(root: Path, mlflow: bool = False) -> Path:
    """params.yaml, processed data and a tiny trained-format UNet checkpoint under `root`."""
    raw = shrunk_raw(eval={"batch_size": 3}, mlflow={"enabled": mlflow})
    write_params(root, raw)
    make_processed_dir(root / "data/processed", n_test=5)
    torch.manual_seed(0)
    model = UNet(model_params(dropout=0.0)).eval()
    save_model(root / "models/model.pt", model, {"params": raw, "epoch": 3})
    return root


def run_stage(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "stages.evaluate"]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_stage_end_to_end(tmp_path):
    root = make_project(tmp_path)
    proc = run_stage(root)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert set(METRIC_NAMES) <= metrics.keys() and set(metrics["baseline"]) == set(METRIC_NAMES)
    assert metrics["n_images"] == 5 and metrics["mlflow_run_id"] is None and metrics["model_epoch"] == 3
    assert metrics["nonfinite_pixels"] == 0
    assert metrics["source"] == "synthetic" and metrics["device"] == "cpu"
    assert metrics["protocol"] == {
        "gt": "raw", "crop": "eigen", "flip_tta": False, "min_depth": 0.001, "max_depth": 10.0,
        "train_resolution": [32, 48], "eval_resolution": [48, 64],
    }  # fmt: skip
    per_image = pd.read_csv(root / "reports/per_image.csv")
    assert list(per_image.columns) == ["index", "scene", "scene_type", *METRIC_NAMES] and len(per_image) == 5
    assert metrics["abs_rel"] == pytest.approx(per_image.abs_rel.mean())
    by_type = pd.read_csv(root / "reports/per_scene_type.csv")
    assert list(by_type.columns) == ["scene_type", "n_images", *METRIC_NAMES] and by_type.n_images.sum() == 5
    by_depth = pd.read_csv(root / "reports/error_by_depth.csv")
    assert tuple(by_depth.columns) == BIN_COLUMNS and by_depth.n_pixels.sum() > 0
    with np.load(root / "reports/predictions.npz") as npz:
        assert npz["rgb"].shape == (2, 48, 64, 3) and npz["pred"].shape == npz["gt"].shape == (2, 48, 64)
        assert set(npz.files) == {"index", "rgb", "gt", "pred", "scene", "scene_type"}
    assert not list((root / "reports").glob(".*"))  # no temporary files left


def test_missing_model_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    root = make_project(tmp_path)
    (root / "models/model.pt").unlink()
    with pytest.raises(PipelineError, match="models/model.pt"):
        evaluate(load_params(root / "params.yaml"), root, device="cpu")
    assert not (root / "reports").exists()


class FakeTracker:
    def __init__(self) -> None:
        self.metrics, self.artifacts, self.ended, self.run_id = {}, [], False, "run123"
        self.splits: list[str] = []

    def log_metrics(self, m, step=None):
        self.metrics.update(m)

    def log_splits(self, params, processed_dir, splits):
        self.splits += splits

    def log_artifact(self, path):
        self.artifacts.append(Path(path).name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.ended = True


def test_evaluate_logs_to_the_training_run(tmp_path, monkeypatch):
    root = make_project(tmp_path, mlflow=True)
    fake = FakeTracker()
    monkeypatch.setattr("pipeline.evaluation.evaluate.resume_run", lambda params, path, root: fake)
    metrics = evaluate(load_params(root / "params.yaml"), root, device="cpu")
    assert metrics["mlflow_run_id"] == "run123" and fake.ended
    assert json.loads((root / "reports/metrics.json").read_text())["mlflow_run_id"] == "run123"
    assert {k: fake.metrics[k] for k in METRIC_NAMES} == {k: metrics[k] for k in METRIC_NAMES}
    assert all(fake.metrics[f"baseline_{k}"] == metrics["baseline"][k] for k in METRIC_NAMES)
    assert fake.artifacts == ["metrics.json", "per_image.csv", "per_scene_type.csv"]
    assert fake.splits == ["test"]  # the run's dataset input for the test split
