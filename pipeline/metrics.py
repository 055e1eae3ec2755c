"""THE depth metrics: one implementation for training validation, evaluation, report and tests.

Monodepth2 computes its metrics twice (numpy and torch) with different crops, so its
validation disagrees with its evaluation; here every caller goes through
`per_image_metrics_torch` with the mask from `eval_mask`.

Protocol (BTS / AdaBins on NYUDv2): predictions clipped to [min_depth, max_depth] (NaN and
-inf to min_depth, +inf to max_depth, as BTS does); valid
pixels have min_depth < gt < max_depth inside the Eigen crop; metrics are computed per
image, then averaged over images (not pooled over pixels).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import overload

import numpy as np
import torch

from pipeline.config import Crop, ParamsError, choices

METRIC_NAMES = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")
HIGHER_IS_BETTER = frozenset({"delta1", "delta2", "delta3"})
CROPS = choices(Crop)

# Eigen et al.'s crop of the 480x640 NYU frame, [top, bottom) x [left, right), as used by
# BTS/AdaBins: it removes the white border left by the Kinect-to-RGB registration.
EIGEN_CROP_480x640 = (45, 471, 41, 601)


def eigen_crop_bounds(h: int, w: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the Eigen crop for an H x W image.

    At other resolutions than 480x640 the bounds are scaled proportionally and rounded
    half up (e.g. 240x320 -> 23:236, 21:301), which keeps the same field of view.
    """
    top, bottom, left, right = EIGEN_CROP_480x640

    def scale(v: int, new: int, old: int) -> int:
        return math.floor(v * new / old + 0.5)

    return scale(top, h, 480), scale(bottom, h, 480), scale(left, w, 640), scale(right, w, 640)


@overload
def eval_mask(gt: torch.Tensor, min_depth: float, max_depth: float, crop: str) -> torch.Tensor: ...
@overload
def eval_mask(gt: np.ndarray, min_depth: float, max_depth: float, crop: str) -> np.ndarray: ...
def eval_mask(
    gt: torch.Tensor | np.ndarray, min_depth: float, max_depth: float, crop: str
) -> torch.Tensor | np.ndarray:
    """Evaluation mask: finite min_depth < gt < max_depth, inside the crop.

    Args:
        gt: ground truth in metres, (..., H, W), torch or numpy.
        min_depth: the valid range's lower end (exclusive), metres.
        max_depth: the valid range's upper end (exclusive), metres.
        crop: "eigen" (see `eigen_crop_bounds`) or "none".

    Returns:
        A bool mask of gt's shape and type (torch in, torch out; numpy in, numpy out).
    """
    if crop not in CROPS:
        raise ParamsError(f"params: 'eval.crop' is {crop!r}; allowed: {' | '.join(CROPS)}")
    # Flipped numpy views have negative strides, which torch.from_numpy refuses.
    g = torch.from_numpy(np.ascontiguousarray(gt)) if isinstance(gt, np.ndarray) else gt
    mask = torch.isfinite(g) & (g > min_depth) & (g < max_depth)
    if crop == "eigen":
        top, bottom, left, right = eigen_crop_bounds(*g.shape[-2:])
        inside = torch.zeros(g.shape[-2:], dtype=torch.bool, device=g.device)  # (H, W)
        inside[top:bottom, left:right] = True
        mask = mask & inside
    return mask.numpy() if isinstance(gt, np.ndarray) else mask


def per_image_metrics_torch(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The nine metrics per image, vectorised over the batch with masked sums.

    With d = log p - log g over an image's valid pixels: delta_k = mean(max(p/g, g/p) <
    1.25^k); abs_rel = mean(|p - g| / g); sq_rel = mean((p - g)^2 / g); rmse =
    sqrt(mean((p - g)^2)); rmse_log = sqrt(mean(d^2)); log10 = mean(|log10 p - log10 g|);
    silog = 100 sqrt(mean(d^2) - mean(d)^2), scaled by 100 as BTS/AdaBins report it.

    Args:
        pred: (B, H, W) or (B, 1, H, W) predicted metres, > 0 where `mask` holds
            (callers clip; see `protocol_metrics_torch`).
        gt: same shape, metres.
        mask: same shape, bool: the pixels to score.

    Returns:
        {name: (B,) tensor}; NaN for an image without valid pixels.
    """
    if not pred.shape == gt.shape == mask.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, mask {tuple(mask.shape)} must match")
    B = pred.shape[0]
    m = mask.reshape(B, -1).bool()  # (B, N)
    dtype = torch.promote_types(pred.dtype, torch.float32)
    one = torch.ones((), dtype=dtype, device=pred.device)
    p = torch.where(m, pred.reshape(B, -1).to(dtype), one)  # (B, N); 1 where masked: finite logs
    g = torch.where(m, gt.reshape(B, -1).to(dtype), one)  # (B, N)
    n = m.sum(1).to(dtype)  # (B,)

    def mean(x: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B,) over valid pixels
        return torch.where(m, x, 0).sum(1) / n  # 0/0 = NaN for an empty image

    d = torch.log(p) - torch.log(g)  # (B, N)
    ratio = torch.maximum(p / g, g / p)  # (B, N)
    out = {f"delta{k}": mean((ratio < 1.25**k).to(dtype)) for k in (1, 2, 3)}
    out["abs_rel"] = mean((p - g).abs() / g)
    out["sq_rel"] = mean((p - g) ** 2 / g)
    out["rmse"] = mean((p - g) ** 2).sqrt()
    out["rmse_log"] = mean(d**2).sqrt()
    out["log10"] = mean(d.abs()) / math.log(10)
    # clamp: rounding can make the variance a hair below 0 when d is constant.
    out["silog"] = 100 * (mean(d**2) - mean(d) ** 2).clamp_min(0).sqrt()
    return out


def clip_prediction(pred: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """The prediction as the protocol scores it: clipped to [min_depth, max_depth].

    Non-finite values are replaced as BTS's evaluation does (NaN and -inf -> min_depth,
    +inf -> max_depth) rather than left to poison some metrics and not others: a NaN
    pixel would drop its image from the means of AbsRel, RMSE and the log metrics while
    the delta metrics (a NaN comparison is False) kept it, so different metrics would
    average over different images. Callers report how many pixels were replaced
    (`count_nonfinite`).
    """
    return torch.nan_to_num(pred, nan=min_depth, posinf=max_depth, neginf=min_depth).clamp(min_depth, max_depth)


def count_nonfinite(pred: torch.Tensor) -> torch.Tensor:
    """How many pixels of a prediction are NaN or infinite (`clip_prediction` replaces them).

    A 0-dim tensor on pred's device, so training validation can sum it without a host sync.
    """
    return (~torch.isfinite(pred)).sum()


def protocol_metrics_torch(
    pred: torch.Tensor, gt: torch.Tensor, min_depth: float = 1e-3, max_depth: float = 10.0, crop: str = "eigen"
) -> dict[str, torch.Tensor]:
    """Per-image metrics under the full protocol: `clip_prediction`, `eval_mask`, then the core.

    For training validation on the device (the same numbers `depth_metrics` gives).
    Every image is scored on the same pixels by every metric, non-finite predictions
    included (see `clip_prediction`).

    Args:
        pred: (B, H, W) or (B, 1, H, W) predicted metres.
        gt: ground truth, same shape, metres.
        min_depth: lower end of the valid range; predictions are clipped to it.
        max_depth: upper end of the valid range; predictions are clipped to it.
        crop: "eigen" or "none".

    Returns:
        {name: (B,) tensor}, NaN for images without valid pixels.
    """
    mask = eval_mask(gt, min_depth, max_depth, crop)
    return per_image_metrics_torch(clip_prediction(pred, min_depth, max_depth), gt, mask)


def average_metrics(per_image: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, float]:
    """Mean over images of per-image metrics, skipping NaN (empty) images; NaN if all are."""
    out = {}
    for name, v in per_image.items():
        v = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
        ok = ~np.isnan(v)
        out[name] = float(v[ok].mean()) if ok.any() else float("nan")
    return out


def _as_batch(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        return a[None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (H, W) or (N, H, W), got shape {a.shape}")
    return a


def depth_metrics_per_image(
    pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3, max_depth: float = 10.0, crop: str = "eigen"
) -> dict[str, np.ndarray]:
    """Per-image metrics for numpy depth maps in metres (float64 on the CPU, for exactness).

    Args:
        pred: (H, W) or (N, H, W) predicted metres.
        gt: ground truth, same shape.
        min_depth: lower end of the range pred is clipped to; gt outside the range is ignored.
        max_depth: upper end of that range.
        crop: "eigen" or "none".

    Returns:
        {name: (N,) array}; NaN for an image without valid pixels.
    """
    p, g = _as_batch(pred, "pred"), _as_batch(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    pt = torch.from_numpy(p.astype(np.float64))  # (N, H, W)
    gtt = torch.from_numpy(g.astype(np.float64))  # (N, H, W)
    per = protocol_metrics_torch(pt, gtt, min_depth, max_depth, crop)
    return {k: v.numpy() for k, v in per.items()}


def depth_metrics(
    pred: np.ndarray, gt: np.ndarray, min_depth: float = 1e-3, max_depth: float = 10.0, crop: str = "eigen"
) -> dict[str, float]:
    """The nine metrics, per image then averaged over images (see `depth_metrics_per_image`)."""
    return average_metrics(depth_metrics_per_image(pred, gt, min_depth, max_depth, crop))
