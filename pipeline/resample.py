"""Resampling between the full 480x640 frame and the training resolution, on one pixel grid.

Depth is downsampled by picking one full-resolution pixel per output pixel (never a
blend: see `resize_depth`), the pixel `floor((i + 0.5) * H / h)`. Everything else is
placed on exactly that grid, so image, target and prediction describe the same points:

- `resize_rgb` averages the RGB with an antialiasing tent filter *centred on that same
  pixel*. A plain antialiased resize (PIL's) centres output pixel i on the continuous
  position (i + 0.5) * H / h, which for a 2x reduction lies between pixels 2i and
  2i + 1, while the depth sample is pixel 2i + 1: half a full-resolution pixel off,
  always down and to the right.
- `upsample_prediction` interpolates a low-resolution prediction back to full resolution
  treating its pixel i as sitting at the centre of full-resolution pixel
  `floor((i + 0.5) * H / h)`, the inverse of the depth sampling (bilinear
  `align_corners=False` would assume the PIL grid and inherit the offset).

Positions are in full-resolution pixel units, pixel k covering [k, k + 1) with its
centre at k + 0.5.
"""

from __future__ import annotations

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=16)
def sample_indices(full: int, small: int) -> np.ndarray:
    """The full-resolution pixel each of `small` output pixels samples, (small,) int64."""
    return np.minimum(((np.arange(small) + 0.5) * (full / small)).astype(np.int64), full - 1)


@functools.lru_cache(maxsize=16)
def _tent_matrix(full: int, small: int) -> np.ndarray:
    """(small, full) float32 rows of an antialiasing tent filter centred on `sample_indices`.

    The tent's half-width is the reduction factor (at least 1 pixel), as in PIL's
    antialiased bilinear filter; rows are normalised, so a border row whose tent is cut
    off by the image edge still averages to the right brightness.
    """
    scale = max(full / small, 1.0)
    centres = sample_indices(full, small)[:, None] + 0.5  # (small, 1)
    x = np.arange(full)[None, :] + 0.5  # (1, full)
    w = np.clip(1.0 - np.abs(x - centres) / scale, 0.0, None)  # (small, full)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _tent_band(full: int, small: int) -> tuple[np.ndarray, np.ndarray]:
    """`_tent_matrix` as a band: the K input pixels each output pixel averages, and their weights.

    A tent spans a few pixels (3 for a 2x reduction), so a dense (small, full) product
    multiplies mostly zeros: 480 -> 240 rows is 480 products per output value instead of
    3, which made the resize ~10x the cost of decoding a JPEG.

    Returns:
        (small, K) input indices and (small, K) weights; taps beyond a tent weigh 0.
    """
    m = _tent_matrix(full, small)  # (small, full)
    nz = m > 0
    first, last = nz.argmax(1), full - 1 - nz[:, ::-1].argmax(1)  # (small,) each
    k = int((last - first).max()) + 1
    idx = np.minimum(first, full - k)[:, None] + np.arange(k)  # (small, K), inside the image, covering the tent
    return idx, np.take_along_axis(m, idx, 1)


def _banded(x: np.ndarray, band: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(full, M) -> (small, M): each output row the tent-weighted sum of its K input rows."""
    idx, w = band
    out = w[:, :1] * x[idx[:, 0]]  # (small, M)
    for j in range(1, idx.shape[1]):
        out += w[:, j : j + 1] * x[idx[:, j]]
    return out


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased resize of an (H, W, 3) uint8 image to (height, width, 3), on the depth grid.

    Fine texture averages out instead of aliasing into moire (the tent filter widens
    with the reduction factor), and output pixel (i, j) is centred on the full-resolution
    pixel that `resize_depth` samples for (i, j).
    """
    H, W, C = rgb.shape
    if (height, width) == (H, W):
        return rgb
    x = _banded(rgb.reshape(H, W * C).astype(np.float32), _tent_band(H, height))  # (h, W*C): rows first
    x = x.reshape(height, W, C).transpose(1, 0, 2).reshape(W, height * C)  # (W, h*C)
    x = _banded(x, _tent_band(W, width)).reshape(width, height, C)  # (w, h, C): then columns
    return np.clip(np.rint(x.transpose(1, 0, 2)), 0, 255).astype(np.uint8)  # (h, w, C)


def resize_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-pixel resize of an (H, W) depth map to (height, width), on the shared grid.

    Depth must not be interpolated: averaging across an occlusion edge invents depths
    that lie on no surface (a "flying pixel" halfway between a chair and the wall),
    and averaging a raw-depth hole (0) with its neighbours turns "no measurement" into
    a bogus small depth. Picking one source pixel keeps every value a real measurement
    and keeps holes exactly 0.
    """
    H, W = depth.shape
    if (height, width) == (H, W):
        return depth
    return depth[np.ix_(sample_indices(H, height), sample_indices(W, width))]


def _linear_weights(full: int, small: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every full-resolution pixel: the two low-resolution neighbours and the second one's weight.

    Low-resolution pixel i sits at `sample_indices(full, small)[i] + 0.5`; outside the
    first and last of those the nearest one is repeated (border padding). Needs
    full >= small (distinct positions).
    """
    pos = torch.from_numpy(sample_indices(full, small).astype(np.float64) + 0.5)  # (small,) increasing
    x = torch.arange(full, dtype=torch.float64) + 0.5  # (full,)
    if small == 1:
        zero = torch.zeros(full, dtype=torch.long, device=device)
        return zero, zero, torch.zeros(full, dtype=torch.float64, device=device)
    hi = torch.searchsorted(pos, x).clamp(1, small - 1)  # (full,) first position >= x
    lo = hi - 1
    t = ((x - pos[lo]) / (pos[hi] - pos[lo])).clamp(0.0, 1.0)
    return lo.to(device), hi.to(device), t.to(device)


def _shrink(pred: torch.Tensor, dim: int, full: int) -> torch.Tensor:
    """Averages along `dim` the prediction pixels that `resize_rgb` took from one pixel of a smaller image.

    For images smaller than the training resolution (e.g. `predict` on a thumbnail):
    every image pixel j was repeated into the prediction pixels i with
    `sample_indices(full, small)[i] == j`; their mean is j's depth.
    """
    small = pred.shape[dim]
    idx = torch.from_numpy(sample_indices(full, small)).to(pred.device)  # (small,) values in [0, full)
    weights = torch.zeros(full, small, dtype=pred.dtype, device=pred.device)
    weights[idx, torch.arange(small, device=pred.device)] = 1.0
    weights /= weights.sum(1, keepdim=True)  # (full, small); every row has at least one 1
    return torch.movedim(torch.movedim(pred, dim, -1) @ weights.T, -1, dim)


def upsample_prediction(pred: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, h, w) predictions to (B, height, width) on the image's grid: the inverse of `resize_depth`.

    Linear interpolation between the full-resolution pixels the low-resolution ones sit
    on; separable, rows first, then columns, each a gather of two neighbours and a
    blend. An axis on which the image is smaller than the prediction is averaged instead.
    """
    if pred.shape[1] > height:
        pred = _shrink(pred, 1, height)
    if pred.shape[2] > width:
        pred = _shrink(pred, 2, width)
    B, h, w = pred.shape
    if (h, w) == (height, width):
        return pred
    r0, r1, tr = _linear_weights(height, h, pred.device)
    c0, c1, tc = _linear_weights(width, w, pred.device)
    tr, tc = tr.to(pred.dtype), tc.to(pred.dtype)
    rows = pred[:, r0] * (1 - tr)[:, None] + pred[:, r1] * tr[:, None]  # (B, height, w)
    return rows[:, :, c0] * (1 - tc) + rows[:, :, c1] * tc  # (B, height, width)
