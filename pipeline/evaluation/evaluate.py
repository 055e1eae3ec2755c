"""The evaluate stage: `run(params, root)`, model + test split -> reports, logged to the MLflow run.

The protocol itself lives beside it (`inference`, the streamed loop in `protocol`, the
constant `baseline`); this module loads the inputs, writes the five outputs atomically
and logs them to the run that training opened. The device is picked automatically
(CUDA, then MPS, then the CPU) and is not a param: it must not change the numbers
beyond bf16 rounding on CUDA.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Params, PathsParams
from pipeline.data.datasets import read_summary
from pipeline.device import pick_device
from pipeline.evaluation.baseline import constant_baseline
from pipeline.evaluation.inference import train_resolution
from pipeline.evaluation.protocol import EvalResult, evaluate_model
from pipeline.io import atomic_path, write_json_atomic
from pipeline.metrics import METRIC_NAMES, average_metrics
from pipeline.model import load_model
from pipeline.tracking import Tracker, resume_run
from pipeline.tracking.names import evaluation_metrics

log = logging.getLogger(__name__)


def _float_or_none(v: float) -> float | None:
    """JSON has no NaN: an undefined mean (no valid pixel anywhere) is written as null."""
    return float(v) if math.isfinite(v) else None


def per_scene_type(per_image: pd.DataFrame) -> pd.DataFrame:
    """scene_type, n_images, then the mean of every metric over that type's images."""
    groups = per_image.groupby("scene_type", sort=True)
    table = groups[list(METRIC_NAMES)].mean()
    table.insert(0, "n_images", groups.size())
    return table.reset_index()


def write_tables(result: EvalResult, paths: PathsParams) -> None:
    """Writes per_image.csv, per_scene_type.csv, error_by_depth.csv and predictions.npz atomically."""
    tables = {
        paths.per_image: result.per_image,
        paths.per_scene_type: per_scene_type(result.per_image),
        paths.error_by_depth: result.error_by_depth,
    }
    for path, table in tables.items():
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    # A file object, not a name: np.savez would append ".npz" to the temporary name.
    with atomic_path(paths.predictions) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **result.examples)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool


def metrics_summary(
    result: EvalResult, params: Params, train_hw: tuple[int, int], baseline: tuple[float, str], **info: Any
) -> dict[str, Any]:
    """The content of metrics.json.

    Args:
        result: the protocol's output.
        params: all params (the protocol keys come from `params.eval`).
        train_hw: the model's training resolution.
        baseline: (depth in metres, source) of the constant baseline.
        **info: extra top-level keys (source, mlflow_run_id, device, model_epoch).
    """
    cfg = params.eval
    model = average_metrics({k: result.per_image[k].to_numpy() for k in METRIC_NAMES})
    base = average_metrics({k: result.baseline_per_image[k].to_numpy() for k in METRIC_NAMES})
    return {
        **{k: _float_or_none(model[k]) for k in METRIC_NAMES},
        "baseline": {k: _float_or_none(base[k]) for k in METRIC_NAMES},
        "baseline_depth": baseline[0],
        "baseline_source": baseline[1],
        "n_images": len(result.per_image),
        "nonfinite_pixels": result.nonfinite_pixels,
        "protocol": {
            "gt": cfg.gt,
            "crop": cfg.crop,
            "flip_tta": cfg.flip_tta,
            "min_depth": cfg.min_depth,
            "max_depth": cfg.max_depth,
            "train_resolution": list(train_hw),
            "eval_resolution": list(result.eval_hw),
        },
        **info,
    }


def _log_to_run(tracker: Tracker, paths: PathsParams, metrics: dict[str, Any]) -> None:
    """Logs the test metrics (metrics.json's names and baseline_<name>: MLflow's test/, baseline/) and the tables."""
    tracker.log_metrics(evaluation_metrics(metrics))
    for path in (paths.metrics, paths.per_image, paths.per_scene_type):
        tracker.log_artifact(path)


def run(params: Params, root: Path, device: str = "auto") -> dict[str, Any]:
    """Evaluates `paths.model` on the processed test split; writes the five reports.

    Args:
        params: all params; reads `paths`, `eval` and `mlflow`.
        root: the folder `params.paths` are relative to.
        device: auto | cuda | mps | cpu.

    Returns:
        The content of metrics.json.

    Raises:
        PipelineError: if the model or processed data are missing or unreadable.
    """
    dev = pick_device(device)
    paths = params.paths.resolve(root)
    model, meta = load_model(paths.model, map_location=dev)
    train_hw = train_resolution(meta)
    processed, cfg = paths.processed_dir, params.eval
    baseline = constant_baseline(processed, cfg.min_depth, cfg.max_depth)
    summary = read_summary(processed)
    info = {
        "source": summary.get("source"),
        # What the test split is (the folder source may take the official 654 from the labeled
        # .mat) and whether its `depth` is in-painted: the report words eval.gt by them.
        "test_source": summary.get("test_source", summary.get("source")),
        "test_depth_filled": summary.get("depth_filled", {}).get("test", True),
        "device": dev.type,
        "model_epoch": meta.get("epoch"),
    }
    log.info("evaluating on %s: trained at %dx%d, gt=%s, crop=%s, flip_tta=%s", dev, *train_hw, cfg.gt, cfg.crop,
             cfg.flip_tta)  # fmt: skip
    # Reopened only now, so a missing model or data fails before touching the run; the
    # context ends this stage's hold on it (FAILED on an error) and `report` reopens it.
    with resume_run(params, paths.run_id, root) as tracker:  # no-op when MLflow is off or unreachable
        result = evaluate_model(model, processed / "test.h5", cfg, train_hw, baseline[0])
        write_tables(result, paths)
        metrics = metrics_summary(result, params, train_hw, baseline, mlflow_run_id=tracker.run_id, **info)
        write_json_atomic(paths.metrics, metrics)
        _log_to_run(tracker, paths, metrics)
        tracker.log_splits(params, processed, ("test",))  # the run's dataset input, context "test"
    if result.nonfinite_pixels:
        log.warning(
            "%d predicted test pixel(s) were NaN or infinite; scored as eval.min_depth (NaN, -inf) or "
            "eval.max_depth (+inf), as BTS does",
            result.nonfinite_pixels,
        )
    log.info("test (%d images): %s", metrics["n_images"], _brief(metrics))
    log.info("constant %.2f m baseline: %s", baseline[0], _brief(metrics["baseline"]))
    return metrics


def _brief(m: dict[str, Any]) -> str:
    return ", ".join(f"{k}={m[k]:.4f}" for k in ("abs_rel", "rmse", "delta1") if m[k] is not None)
