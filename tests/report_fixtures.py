"""Every input of the report stage, written under a folder in the documented formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Params
from pipeline.metrics import HIGHER_IS_BETTER, METRIC_NAMES

SCENE_TYPES = ("bedroom", "kitchen", "living_room")


def fake_metrics(rng: np.random.Generator, worse: float = 1.0) -> dict[str, float]:
    """Plausible metric values; `worse` > 1 degrades every one in its own direction."""
    out = {}
    for name in METRIC_NAMES:
        v = float(rng.uniform(0.5, 0.95)) if name in HIGHER_IS_BETTER else float(rng.uniform(0.05, 1.5))
        out[name] = v / worse if name in HIGHER_IS_BETTER else v * worse
    return out


def _frames(rng: np.random.Generator, k: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    gt = np.broadcast_to(1.0 + 6.0 * (1.0 - rows) ** 2, (k, h, w)).copy()  # (K, H, W) metres
    gt[rng.random(gt.shape) < 0.1] = 0.0  # Kinect holes
    pred = np.clip(gt * rng.uniform(0.85, 1.15, gt.shape), 0.5, 10).astype(np.float32)
    pred[gt == 0] = 3.0
    rgb = np.clip(255 * (1.5 / np.maximum(gt, 1))[..., None] * [1.0, 0.9, 0.8], 0, 255).astype(np.uint8)
    return rgb, gt.astype(np.float32), pred


def write_inputs(root: Path, params: Params, k: int = 3, size: tuple[int, int] = (48, 64), seed: int = 0) -> dict:
    """Writes every report input under `root` in the documented formats; returns metrics.json's content."""
    rng = np.random.default_rng(seed)
    p = params.paths
    for rel in (p.metrics, p.run_id):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    metrics = {
        **fake_metrics(rng),
        "baseline": fake_metrics(rng, worse=2.0),
        "n_images": 12,
        "baseline_depth": 2.61,
        "baseline_source": "median training depth",
        "protocol": {"gt": "raw", "crop": "eigen", "flip_tta": False, "min_depth": 0.001, "max_depth": 10.0,
                     "train_resolution": [240, 320], "eval_resolution": [480, 640]},
        "source": params.data.source,
        "mlflow_run_id": "abc123",
        "device": "cpu (test)",
    }  # fmt: skip
    (root / p.metrics).write_text(json.dumps(metrics))
    scene_type = [SCENE_TYPES[i % 3] for i in range(12)]
    per_image = pd.DataFrame(
        {
            "index": np.arange(1, 13),
            "scene": [f"{t}_{i:04d}" for i, t in enumerate(scene_type)],
            "scene_type": scene_type,
            **{m: [fake_metrics(rng)[m] for _ in range(12)] for m in METRIC_NAMES},
        }
    )
    per_image.to_csv(root / p.per_image, index=False)
    per_scene = per_image.groupby("scene_type")[list(METRIC_NAMES)].mean().reset_index()
    per_scene.insert(1, "n_images", per_image.groupby("scene_type").size().to_numpy())
    per_scene.to_csv(root / p.per_scene_type, index=False)
    lo = np.arange(0, 10, 0.5)
    bins = pd.DataFrame({"depth_bin_lo": lo, "depth_bin_hi": lo + 0.5, "n_pixels": rng.integers(0, 50_000, lo.size)})
    for m in ("abs_rel", "rmse", "delta1"):
        bins[m] = rng.uniform(0.05, 0.9, lo.size)
    bins.to_csv(root / p.error_by_depth, index=False)
    rgb, gt, pred = _frames(rng, k, *size)
    idx = np.linspace(1, 12, k).astype(np.int64)
    scenes, types = per_image["scene"].to_numpy(str)[idx - 1], np.array(scene_type, dtype=str)[idx - 1]
    np.savez(root / p.predictions, index=idx, rgb=rgb, gt=gt, pred=pred, scene=scenes, scene_type=types)
    epochs = np.arange(1, 7)
    log = {"epoch": epochs, "train_loss": 1 / epochs, "val_loss": 1.2 / epochs + 0.05}
    final = fake_metrics(rng)  # validation improves towards these, with noise
    for m in METRIC_NAMES:
        trend = final[m] * (1 - 0.5 / epochs) if m in HIGHER_IS_BETTER else final[m] * (1 + 1.5 / epochs)
        log[f"val_{m}"] = trend * rng.uniform(0.97, 1.03, epochs.size)
    log.update({"lr": 1e-3, "images_per_s": 50.0, "seconds": 3.0})
    pd.DataFrame(log).to_csv(root / p.train_log, sep="\t", index=False)
    (root / p.run_id).write_text(json.dumps({"run_id": None, "experiment_id": None, "tracking_uri": None}))
    write_pose(root, params, rng)
    return metrics


def _method(rng: np.random.Generator, **info: str) -> dict:
    stats = lambda s: {k: float(s * rng.uniform(0.8, 1.2)) for k in ("rmse", "mean", "median")}  # noqa: E731
    return {
        **info,
        "rpe": {f"gap_{g}": {"n": 10 - g, "trans_m": stats(0.004 * g), "rot_deg": stats(0.2 * g)} for g in (1, 2)},
        "success": {"gap_1": 0.9, "gap_2": float(rng.uniform(0, 1))},
        "converged": {"gap_1": 1.0, "gap_2": 0.9},
        "ate": {"se3": {"rmse_m": 0.02, "mean_m": 0.02, "median_m": 0.02},
                "sim3": {"rmse_m": 0.015, "mean_m": 0.015, "median_m": 0.015, "scale": 1.1}},
        "pairs": 17,
        "pairs_per_s": 12.5,
    }  # fmt: skip


def write_pose(root: Path, params: Params, rng: np.random.Generator) -> dict:
    """pose_table.json (two variants, both baselines, gaps 1 and 2) and one sequence's trajectories."""
    p = params.paths
    metrics = {
        "enabled": True, "sequences": ["synthetic_001_office_100000"], "frames": 10, "resolution": [48, 64],
        "device": "cpu", "model_epoch": 3, "init": "identity", "success_threshold": {"trans_m": 0.01, "rot_deg": 0.5},
        "variants": {"encoder_predicted": _method(rng, features="encoder", depth="predicted", weights="trained"),
                     "rgb_sensor": _method(rng, features="rgb", depth="sensor", weights="trained")},
        "baselines": {"identity": _method(rng, depth="none"), "open3d": _method(rng, depth="sensor")},
    }  # fmt: skip
    (root / p.pose_table).write_text(json.dumps(metrics))
    folder = root / p.pose_trajectories / metrics["sequences"][0]
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(10) / 30.0
    for name, wobble in (("groundtruth", 0.0), ("rgb_sensor", 0.01), ("identity", None)):
        xyz = np.zeros((10, 3)) if wobble is None else np.c_[0.3 * t, 0 * t, 0.1 * t + wobble * np.sin(9 * t)]
        rows = np.c_[t, xyz, np.zeros((10, 3)), np.ones(10)]  # identity rotation: qw = 1
        np.savetxt(folder / f"{name}.txt", rows, fmt="%.6f")
    return metrics
