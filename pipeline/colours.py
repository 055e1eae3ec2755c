"""The colours of depth and error maps, shared by the report's figures and MLflow's depth panels.

One place decides how depth and error look, so a panel in the MLflow UI and the
report's qualitative grid read the same way: depth in viridis, abs-rel error in
YlOrRd up to `ERROR_VMAX`, and black where there is no ground truth. matplotlib is
imported inside the functions: the training process needs it only when it draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ERROR_VMAX = 0.5  # abs rel shown up to 50%; anything worse is saturated (colour bar "extends")
DEPTH_CMAP = "viridis"  # perceptually uniform; its darkest colour is purple, not the black of holes
# Error: pale yellow (exact) to dark red (50% off). No black in it, so black can mean "no ground truth".
ERROR_CMAP = "YlOrRd"
HOLE_COLOUR = "black"  # ground-truth holes: transparent pixels over a black background


def hole_mask(gt: np.ndarray) -> np.ndarray:
    """True where there is no ground truth (gt <= 0 or not finite)."""
    return ~(np.isfinite(gt) & (gt > 0))


def abs_rel_map(gt: np.ndarray, pred: np.ndarray) -> np.ma.MaskedArray:
    """|pred - gt| / gt per pixel, masked where there is no ground truth (gt <= 0 or not finite)."""
    hole = hole_mask(gt)
    safe = np.where(hole, 1.0, gt)  # avoids 0-division warnings; those pixels are masked anyway
    return np.ma.masked_array(np.abs(pred - safe) / safe, mask=hole)


def colormap(name: str) -> Any:
    """A matplotlib colormap whose masked ("bad") values are transparent, so `HOLE_COLOUR` shows through."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=(0, 0, 0, 0))


def colourise(values: np.ndarray, cmap: str, vmax: float) -> np.ndarray:
    """(H, W) values (masked or not) -> (H, W, 3) uint8 on the fixed scale 0..vmax; masked and NaN pixels black.

    The array form of `imshow(values, cmap=colormap(cmap), vmin=0, vmax=vmax)` over a
    black background, for images drawn without a figure (MLflow's per-epoch panels).
    """
    x = np.ma.filled(np.ma.asarray(values, dtype=np.float32), np.nan)  # masked -> NaN: one kind of hole
    hole = ~np.isfinite(x)
    rgb = colormap(cmap)(np.clip(np.where(hole, 0.0, x) / vmax, 0.0, 1.0), bytes=True)[..., :3]  # (H, W, 3)
    rgb[hole] = 0  # HOLE_COLOUR
    return rgb
