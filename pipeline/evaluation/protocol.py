"""The standard NYUDv2 protocol, streamed over `test.h5`.

Eigen et al. 2014; BTS, AdaBins: the network sees each test image at its training
resolution, its prediction is upsampled bilinearly to the test resolution (480x640),
clipped to [eval.min_depth, eval.max_depth] and scored against the raw Kinect depth
(or the in-painted one, `eval.gt`) where that lies inside the range and the crop.
Metrics come from `pipeline.metrics` only, per image, then averaged over images.

The test file is read one batch at a time (`iter_split`), so memory holds one batch
plus the few example images kept for the report, never the 654-image split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import EvalParams
from pipeline.data.datasets import SplitArrays, iter_split, split_length
from pipeline.errors import PipelineError
from pipeline.evaluation.depth_bins import DepthBinAccumulator
from pipeline.evaluation.formats import EXAMPLE_KEYS
from pipeline.evaluation.inference import predict_depth
from pipeline.metrics import METRIC_NAMES, clip_prediction, count_nonfinite, eval_mask, protocol_metrics_torch


@dataclass(frozen=True)
class EvalResult:
    """Everything the evaluate stage writes, before it is written."""

    per_image: pd.DataFrame  # one row per test image: index, scene, scene_type, METRIC_NAMES
    baseline_per_image: pd.DataFrame  # the constant baseline's METRIC_NAMES, same rows
    error_by_depth: pd.DataFrame  # depth_bins.BIN_COLUMNS
    examples: dict[str, np.ndarray]  # EXAMPLE_KEYS -> (K, ...) arrays
    eval_hw: tuple[int, int]  # the test resolution
    nonfinite_pixels: int = 0  # predicted pixels that were NaN/inf, replaced by `clip_prediction`


def protocol_gt(batch: SplitArrays, gt: str) -> np.ndarray:
    """The ground truth `eval.gt` names: `raw` Kinect depth (0 = hole) or `filled` (in-painted)."""
    return batch.raw_depth if gt == "raw" else batch.depth  # (B, H, W) metres


def example_positions(n: int, k: int) -> np.ndarray:
    """Up to k row positions evenly spaced through a split of n images, first and last included."""
    if n == 0 or k == 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def _image_rows(batch: SplitArrays, metrics: dict[str, np.ndarray]) -> pd.DataFrame:
    ids = {"index": batch.index, "scene": batch.scene, "scene_type": batch.scene_type}
    return pd.DataFrame({**ids, **{name: metrics[name] for name in METRIC_NAMES}})


def _examples(batch: SplitArrays, gt: np.ndarray, pred: torch.Tensor, rows: np.ndarray) -> list[dict[str, Any]]:
    """The kept examples among this batch's rows (positions within the batch)."""
    rows = rows[(rows >= 0) & (rows < len(batch))]
    return [
        {"index": batch.index[r], "rgb": batch.rgb[r], "gt": gt[r].astype(np.float32),
         "pred": pred[r].float().cpu().numpy(), "scene": batch.scene[r], "scene_type": batch.scene_type[r]}
        for r in rows
    ]  # fmt: skip


def _metric_dtype(device: torch.device) -> torch.dtype:
    # float64 as `depth_metrics` uses, for exact means over 300k pixels; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _score(pred: torch.Tensor, gt: torch.Tensor, cfg: EvalParams) -> dict[str, np.ndarray]:
    """Per-image metrics under the protocol (clip, `eval_mask`, the one implementation), on the host."""
    per_image = protocol_metrics_torch(pred, gt, cfg.min_depth, cfg.max_depth, cfg.crop)
    return {k: v.cpu().double().numpy() for k, v in per_image.items()}


def _stack_examples(kept: list[dict[str, np.ndarray]], hw: tuple[int, int]) -> dict[str, np.ndarray]:
    if kept:
        return {k: np.stack([e[k] for e in kept]) for k in EXAMPLE_KEYS}
    H, W = hw  # no examples asked for: empty arrays of the right shapes and dtypes
    return {"index": np.zeros(0, np.int32), "rgb": np.zeros((0, H, W, 3), np.uint8),
            "gt": np.zeros((0, H, W), np.float32), "pred": np.zeros((0, H, W), np.float32),
            "scene": np.zeros(0, str), "scene_type": np.zeros(0, str)}  # fmt: skip


def evaluate_model(
    model: nn.Module, test_path: str | Path, cfg: EvalParams, train_hw: tuple[int, int], baseline_depth: float
) -> EvalResult:
    """Runs the protocol over a processed test split.

    Args:
        model: depth network (see `predict_depth`), on its inference device.
        test_path: the processed `test.h5`.
        cfg: `params.eval` (gt, crop, flip_tta, min/max depth, batch size, examples).
        train_hw: the model's training (height, width).
        baseline_depth: the constant baseline's depth, metres.

    Raises:
        PipelineError: if the test split is empty or unreadable.
    """
    n = split_length(test_path)
    if n == 0:
        raise PipelineError(f"{test_path}: the test split has no images; re-run `dvc repro preprocess`")
    keep = example_positions(n, cfg.n_examples)
    bins = DepthBinAccumulator(cfg.max_depth)
    rows, base_rows, kept, start, hw, nonfinite = [], [], [], 0, (0, 0), 0
    model.eval()
    batches = iter_split(test_path, cfg.batch_size)
    for batch in tqdm(batches, total=math.ceil(n / cfg.batch_size), desc="evaluate", unit="batch"):
        hw = batch.rgb.shape[1:3]
        # Metrics run on the inference device: on a GPU the whole protocol stays there.
        pred = predict_depth(model, batch.rgb, train_hw, cfg.flip_tta)  # (B, H, W) metres
        gt_np = protocol_gt(batch, cfg.gt)  # (B, H, W) metres
        gt = torch.from_numpy(gt_np).to(pred.device, _metric_dtype(pred.device))  # (B, H, W)
        nonfinite += int(count_nonfinite(pred))
        pred = clip_prediction(pred.to(gt.dtype), cfg.min_depth, cfg.max_depth)
        const = torch.full_like(gt, baseline_depth)  # (B, H, W): the baseline, scored on the same pixels
        rows.append(_image_rows(batch, _score(pred, gt, cfg)))
        base_rows.append(pd.DataFrame(_score(const, gt, cfg)))
        bins.add(pred, gt, eval_mask(gt, cfg.min_depth, cfg.max_depth, cfg.crop))
        kept += _examples(batch, gt_np, pred, keep - start)
        start += len(batch)
    return EvalResult(
        per_image=pd.concat(rows, ignore_index=True),
        baseline_per_image=pd.concat(base_rows, ignore_index=True)[list(METRIC_NAMES)],
        error_by_depth=bins.to_frame(),
        examples=_stack_examples(kept, hw),
        eval_hw=(int(hw[0]), int(hw[1])),
        nonfinite_pixels=nonfinite,
    )
