"""A sequence's frames as tensors at the resolution the pose estimator works at.

The depth network sees every frame at its training resolution; the estimator works
there too, so encoder features, predicted depth, sensor depth and intrinsics share one
pixel grid. Frames are resized with the pipeline's one resampling (`pipeline.resample`:
antialiased RGB, nearest-pixel depth, so a Kinect hole stays "no reading") and the
intrinsics scaled to match (`Intrinsics.scaled`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.camera import Intrinsics, aspect_differs
from pipeline.errors import PipelineError
from pipeline.resample import resize_depth, resize_rgb
from pipeline.sequences.layout import Sequence, load_depth, load_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceFrames:
    """The frames of one sequence at (h, w), with their ground truth.

    Attributes:
        name: the sequence's name.
        times: (N,) RGB timestamps, seconds.
        poses: (N, 4, 4) float64 ground-truth camera-to-world (OpenCV/TUM camera), a finite
            placeholder where `has_groundtruth` is False (`Sequence.poses`); None without ground truth.
        rgb: (N, h, w, 3) uint8 (Open3D's input; `rgb_tensor` gives the network's).
        depth: (N, h, w) float32 sensor depth in metres, 0 = no reading.
        intrinsics: the camera at (h, w).
        has_groundtruth: (N,) bool, the frames with a ground-truth pose: only these are scored
            (a mocap dropout leaves a few without); all False without ground truth.
    """

    name: str
    times: np.ndarray
    poses: np.ndarray | None
    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: Intrinsics
    has_groundtruth: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    @property
    def groundtruth(self) -> np.ndarray:
        """(N, 4, 4) ground-truth poses.

        Raises:
            PipelineError: the sequence has none.
        """
        if self.poses is None:
            raise PipelineError(f"{self.name}: no ground truth to score against (groundtruth.txt)")
        return self.poses

    def rgb_tensor(self, index: np.ndarray, device: torch.device) -> torch.Tensor:
        """(b, 3, h, w) float32 RGB in [0, 1] of the frames at `index`, on `device`."""
        x = torch.from_numpy(self.rgb[index]).to(device)  # (b, h, w, 3) uint8
        return x.permute(0, 3, 1, 2).float() / 255.0

    def depth_tensor(self, index: np.ndarray, device: torch.device) -> torch.Tensor:
        """(b, 1, h, w) float32 sensor depth in metres (0 = none) of the frames at `index`."""
        return torch.from_numpy(self.depth[index]).to(device)[:, None]


@dataclass(frozen=True)
class Pairs:
    """The scored pairs of a sequence: (P,) target index i, source index j = i + gap, gap."""

    target: np.ndarray
    source: np.ndarray
    gap: np.ndarray

    def __len__(self) -> int:
        return len(self.target)


def pairs_for(n: int, gaps: list[int]) -> Pairs:
    """Every (i, i + gap) inside n frames, for each gap (gaps longer than the sequence give none)."""
    t = [np.arange(0, n - g) for g in gaps]
    return Pairs(np.concatenate(t), np.concatenate([x + g for x, g in zip(t, gaps, strict=True)]),
                 np.concatenate([np.full(len(x), g) for x, g in zip(t, gaps, strict=True)]))  # fmt: skip


def load_frames(seq: Sequence, hw: tuple[int, int], max_frames: int) -> SequenceFrames:
    """Reads the first `max_frames` frames of `seq` (0 = all) at `hw` = (h, w).

    Raises:
        PipelineError: an image cannot be read (from `load_rgb` / `load_depth`).
    """
    frames = seq.frames[:max_frames] if max_frames else seq.frames
    h, w = hw
    k = seq.intrinsics
    if aspect_differs((k.height, k.width), (h, w)):
        log.warning("%s: frames are %dx%d, the estimator works at %dx%d: the network sees them squashed",
                    seq.name, k.width, k.height, w, h)  # fmt: skip
    rgb = np.stack([resize_rgb(read_rgb(f.rgb_path), h, w) for f in frames])  # (N, h, w, 3)
    depth = np.stack([_depth(f.depth_path, hw) for f in frames])  # (N, h, w)
    n = len(frames)
    mask = seq.groundtruth_mask[:n]
    return SequenceFrames(
        name=seq.name,
        times=np.array([f.rgb_time for f in frames]),
        poses=seq.poses[:n] if mask.any() else None,
        rgb=rgb,
        depth=depth.astype(np.float32),
        intrinsics=k.scaled(w, h),
        has_groundtruth=mask,
    )


def frames_from_images(paths: list[Path], intrinsics: Intrinsics, hw: tuple[int, int], fps: float) -> SequenceFrames:
    """A plain folder's images, in name order, at `hw`: no sensor depth (zeros), no ground truth.

    Args:
        paths: the image files in order.
        intrinsics: the camera at the images' own size.
        hw: (h, w) to work at.
        fps: the frame rate their timestamps are made from (frame k at k / fps seconds).

    Raises:
        PipelineError: an image cannot be read, or the images differ in size.
    """
    h, w = hw
    rgb = []
    for path in paths:
        image = read_rgb(path)
        if image.shape[:2] != (intrinsics.height, intrinsics.width):
            raise PipelineError(
                f"{path}: {image.shape[1]}x{image.shape[0]}, but the sequence's first image is "
                f"{intrinsics.width}x{intrinsics.height}; a sequence's frames must share one camera"
            )
        rgb.append(resize_rgb(image, h, w))
    n = len(paths)
    return SequenceFrames(Path(paths[0]).parent.name, np.arange(n) / fps, None, np.stack(rgb),
                          np.zeros((n, h, w), np.float32), intrinsics.scaled(w, h), np.zeros(n, bool))  # fmt: skip


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of an image file.

    Raises:
        PipelineError: the file is missing or not an image Pillow can read.
    """
    try:
        return load_rgb(path)
    except OSError as e:  # Pillow's UnidentifiedImageError is an OSError too
        raise PipelineError(f"{path}: not a readable image ({type(e).__name__}); replace or remove it") from None


def _depth(path: Path | None, hw: tuple[int, int]) -> np.ndarray:
    """A frame's sensor depth at hw; all zeros (no reading) where the sequence has none for it."""
    if path is None:
        return np.zeros(hw, np.float32)
    return resize_depth(load_depth(path), *hw)
