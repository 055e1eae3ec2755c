"""Per-epoch depth panels for MLflow: a fixed handful of validation images, as the model sees them.

One image per validated epoch (`Tracker.log_val_panels`, key `PANEL_KEY`, step = epoch),
one row per validation image: RGB | ground truth | prediction | abs-rel error, above a
legend strip. Depth is drawn on the fixed scale 0..`PANEL_MAX_DEPTH` m and the error
on 0..`ERROR_VMAX`, with the report's colours (`pipeline.colours`), so the same image
compares across epochs and across runs. The images are the same every epoch: evenly
spaced over the validation split, read once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.colours import DEPTH_CMAP, ERROR_CMAP, ERROR_VMAX, abs_rel_map, colourise, hole_mask
from pipeline.data.datasets import read_split
from pipeline.evaluation.inference import predict_batch

PANEL_KEY = "val/depth_maps"
PANEL_MAX_DEPTH = 10.0  # metres: NYU's range; fixed (not the data's max) so colours mean the same in every run
GAP = 2  # white pixels between tiles
LEGEND_H = 14  # the legend strip: colour bars with their ends labelled


@dataclass(frozen=True)
class PanelImages:
    """The validation images drawn every epoch."""

    rgb: np.ndarray  # (K, H, W, 3) uint8
    gt: np.ndarray  # (K, H, W) metres, the filled depth validation scores; <= 0 where unknown


def panel_indices(n: int, k: int) -> np.ndarray:
    """`k` evenly spaced indices into `n` images (all of them when n <= k), (min(k, n),) int."""
    return np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(int))


def load_panel_images(val_path: str | Path, k: int) -> PanelImages:
    """The `k` fixed validation images of a processed val split file."""
    split = read_split(val_path)
    idx = panel_indices(len(split.rgb), k)
    return PanelImages(rgb=split.rgb[idx], gt=split.depth[idx].astype(np.float32))


@torch.inference_mode()
def predict_panels(net: nn.Module, images: PanelImages) -> np.ndarray:
    """The network's depth for the panel images, (K, H, W) metres, in eval mode; its mode is restored."""
    was_training = net.training
    net.eval()  # BatchNorm's running statistics, and no update of them
    try:
        return predict_batch(net, images.rgb, images.rgb.shape[1:3])  # at training resolution: no resize
    finally:
        net.train(was_training)


def _row(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> list[np.ndarray]:
    """The four (H, W, 3) uint8 tiles of one image."""
    gt_shown = np.ma.masked_array(gt, mask=hole_mask(gt))
    return [
        rgb,
        colourise(gt_shown, DEPTH_CMAP, PANEL_MAX_DEPTH),
        colourise(pred, DEPTH_CMAP, PANEL_MAX_DEPTH),
        colourise(abs_rel_map(gt, pred), ERROR_CMAP, ERROR_VMAX),
    ]


@functools.lru_cache(maxsize=4)  # the same strip every epoch
def _legend(width: int, tile_w: int) -> np.ndarray:
    """(LEGEND_H, width, 3) uint8: the depth bar under ground truth and prediction, the error bar under error."""
    from PIL import Image, ImageDraw

    strip = np.full((LEGEND_H, width, 3), 255, np.uint8)
    bar_h = LEGEND_H // 2
    depth_x0, depth_w = tile_w + GAP, 2 * tile_w + GAP
    err_x0 = 3 * (tile_w + GAP)
    strip[:bar_h, depth_x0 : depth_x0 + depth_w] = colourise(
        np.linspace(0, PANEL_MAX_DEPTH, depth_w)[None].repeat(bar_h, 0), DEPTH_CMAP, PANEL_MAX_DEPTH
    )
    strip[:bar_h, err_x0 : err_x0 + tile_w] = colourise(
        np.linspace(0, ERROR_VMAX, tile_w)[None].repeat(bar_h, 0), ERROR_CMAP, ERROR_VMAX
    )
    image = Image.fromarray(strip)
    draw = ImageDraw.Draw(image)
    labels = [
        (depth_x0, "0 m", "la"),
        (depth_x0 + depth_w, f"{PANEL_MAX_DEPTH:g} m", "ra"),
        (err_x0, "0", "la"),
        (err_x0 + tile_w, f"{ERROR_VMAX:.0%} abs rel", "ra"),
    ]
    for x, text, anchor in labels:
        draw.text((x, bar_h - 1), text, fill=(0, 0, 0), anchor=anchor, font_size=8)
    return np.asarray(image)


def panel_png(image: np.ndarray) -> Any:
    """The panel as a PIL image that PNG-encodes at zlib level 1 (MLflow saves it with PIL's defaults).

    Level 1 instead of PIL's 6: the encoding is most of a panel's cost after the forward
    pass, and the smooth depth maps compress nearly as well (see README, "The MLflow UI").
    """
    from PIL import Image

    png = Image.fromarray(image)
    png.encoderinfo = {"compress_level": 1}  # PIL's documented per-image save parameters
    return png


def render_panels(images: PanelImages, pred: np.ndarray) -> np.ndarray:
    """One (K*(H+GAP) + LEGEND_H, 4W + 3*GAP, 3) uint8 image: a row of four tiles per image, then the legend."""
    k, h, w = images.gt.shape
    width = 4 * w + 3 * GAP
    canvas = np.full((k * (h + GAP) + LEGEND_H, width, 3), 255, np.uint8)
    for i in range(k):
        top = i * (h + GAP)
        for j, tile in enumerate(_row(images.rgb[i], images.gt[i], pred[i])):
            canvas[top : top + h, j * (w + GAP) : j * (w + GAP) + w] = tile
    canvas[k * (h + GAP) :] = _legend(width, w)
    return canvas
