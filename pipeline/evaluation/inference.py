"""The one inference path, shared by the evaluate stage and the `predict` CLI.

The network sees every image at its training resolution (`pipeline.resample.resize_rgb`,
the resize preprocess used for the training images), and its prediction is interpolated
back to the image's own size on the grid the training targets were sampled from
(`upsample_prediction`), so prediction and ground truth pixels line up.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.resample import resize_rgb, upsample_prediction


def train_resolution(meta: dict[str, Any]) -> tuple[int, int]:
    """(height, width) the model was trained at, from the checkpoint's stored params.

    Raises:
        PipelineError: if the checkpoint does not record it.
    """
    try:
        pre = meta["params"]["preprocess"]
        return int(pre["height"]), int(pre["width"])
    except (KeyError, TypeError):
        raise PipelineError(
            "the model checkpoint has no params.preprocess.height/width (its training resolution); "
            "re-train it with `dvc repro train`"
        ) from None


def _device_of(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a stateless module)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def predict_depth(
    model: nn.Module, rgb_uint8: np.ndarray, train_hw: tuple[int, int], flip_tta: bool = False
) -> torch.Tensor:
    """Depth for a batch of images at the images' own resolution, left on the model's device.

    Args:
        model: maps (B, 3, h, w) RGB in [0, 1] to (B, 1, h, w) metres, in eval mode;
            runs on the device its weights are on, with bf16 autocast on CUDA.
        rgb_uint8: (B, H, W, 3) uint8 images, any H, W.
        train_hw: (h, w) the model was trained at; the images are resized to it.
        flip_tta: also predict the mirrored images and average, mirrored back.

    Returns:
        (B, H, W) float32 metres, not clipped.
    """
    B, H, W, _ = rgb_uint8.shape
    # Exactly the resize preprocess applied to the training images (PIL, antialiased,
    # rounded to uint8), so test inputs carry the training statistics.
    small = np.stack([resize_rgb(im, *train_hw) for im in rgb_uint8])  # (B, h, w, 3) uint8
    device = _device_of(model)
    x = torch.from_numpy(small).to(device).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, h, w) in [0, 1]
    if flip_tta:
        x = torch.cat([x, x.flip(-1)])  # (2B, 3, h, w): one forward pass for both views
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    with amp:
        y = model(x).float()  # (B or 2B, 1, h, w) metres
    if flip_tta:
        y = 0.5 * (y[:B] + y[B:].flip(-1))  # (B, 1, h, w)
    # Back onto the full-resolution grid the training targets were sampled from.
    return upsample_prediction(y[:, 0], H, W)  # (B, H, W)


def predict_batch(
    model: nn.Module, rgb_uint8: np.ndarray, train_hw: tuple[int, int], flip_tta: bool = False
) -> np.ndarray:
    """`predict_depth` as a (B, H, W) float32 numpy array of metres (not clipped)."""
    return predict_depth(model, rgb_uint8, train_hw, flip_tta).cpu().numpy()
