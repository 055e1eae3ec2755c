"""The camera a depth network assumes: NYU's Kinect intrinsics, and how an image is framed for it.

A monocular metric-depth network learns depth from the apparent size of things at its
training camera's field of view. It sees every image at its training resolution, which
on NYUDv2 is the 640x480 Kinect frame scaled to 4:3. An image of another aspect is
either squashed (the old behaviour: circles become ellipses, every learned shape cue is
off) or *framed*: padded or cropped to the training aspect, then scaled uniformly
(`Framing`). The frame then stands for the Kinect's 640x480 image, which is what the
intrinsics of each image's pixels follow from (`Framing.intrinsics`).

Pixel coordinates follow the NYU toolbox's calibration (Bouguet's toolbox): 0-based,
pixel k's centre at k. Scaling such intrinsics by s moves the centre of pixel k, whose
area is [k - 0.5, k + 0.5), to (k + 0.5) s - 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Fit = Literal["pad", "crop"]

ASPECT_TOLERANCE = 0.02
"""Aspect ratios further apart than this fraction squash what a frame resized to the other size shows (a 640x480
frame at 240x320 is exact)."""


def aspect_differs(hw: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether an (h, w) frame resized to (h', w') `other` is squashed by more than `ASPECT_TOLERANCE`."""
    return abs((hw[1] / hw[0]) / (other[1] / other[0]) - 1) > ASPECT_TOLERANCE


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of a `width` x `height` image (0-based pixel centres)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera's intrinsics for the image resized to `width` x `height` (itself at its own size)."""
        if (width, height) == (self.width, self.height):
            return self  # exactly: (cx + 0.5) * 1 - 0.5 need not round back to cx
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )


# NYU Depth V2 toolbox, camera_params.m: fx_rgb, fy_rgb, cx_rgb, cy_rgb of the Kinect's
# RGB camera (the depth maps are registered to it), for its 640x480 images.
NYU_KINECT = Intrinsics(fx=518.8579, fy=519.4696, cx=325.5824, cy=253.7362, width=640, height=480)


@dataclass(frozen=True)
class Framing:
    """Where an (height, width) image sits in the frame the network sees at the training aspect.

    The frame is `frame_hw`; the image's pixel (v, u) is the frame's pixel
    (v + top, u + left). Padding gives a larger frame and offsets >= 0; cropping gives a
    frame inside the image and offsets <= 0 (the image's pixels outside the frame are
    not seen). At the training aspect the frame is the image itself.
    """

    image_hw: tuple[int, int]
    frame_hw: tuple[int, int]
    top: int
    left: int

    def frame(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) image -> (h', w', 3) frame: reflect-padded or centre-cropped.

        Reflection (not a constant border) keeps the padded band's colours and texture
        statistics those of the image, so it adds no artificial edge for the network to
        read as a depth discontinuity; its prediction is discarded anyway.
        """
        (H, W), (fh, fw) = self.image_hw, self.frame_hw
        if rgb.shape[:2] != (H, W):
            raise ValueError(f"image is {rgb.shape[:2]}, this framing is for {self.image_hw}")
        if (fh, fw) == (H, W):
            return rgb
        if fh >= H and fw >= W:  # pad (numpy reflects again and again where the pad exceeds the image)
            return np.pad(rgb, ((self.top, fh - H - self.top), (self.left, fw - W - self.left), (0, 0)), mode="reflect")
        return rgb[-self.top : -self.top + fh, -self.left : -self.left + fw]  # crop

    def unframe(self, depth: np.ndarray) -> np.ndarray:
        """(h', w') depth of the frame -> (H, W) depth of the image; NaN where the frame did not reach."""
        (H, W), (fh, fw) = self.image_hw, self.frame_hw
        out = np.full((H, W), np.nan, dtype=np.float32)
        # The overlap of image and frame, in each one's own coordinates.
        r0, c0 = max(0, -self.top), max(0, -self.left)  # image
        r1, c1 = min(H, fh - self.top), min(W, fw - self.left)
        out[r0:r1, c0:c1] = depth[r0 + self.top : r1 + self.top, c0 + self.left : c1 + self.left]
        return out

    def intrinsics(self, camera: Intrinsics = NYU_KINECT) -> Intrinsics:
        """The intrinsics of the image's pixels, taking the frame to be `camera`'s full image."""
        k = camera.scaled(self.frame_hw[1], self.frame_hw[0])
        H, W = self.image_hw
        return Intrinsics(k.fx, k.fy, k.cx - self.left, k.cy - self.top, W, H)


def framing(image_hw: tuple[int, int], train_hw: tuple[int, int], fit: Fit) -> Framing:
    """How an image of `image_hw` is brought to the aspect of `train_hw` without distortion.

    Args:
        image_hw: (H, W) of the image.
        train_hw: (h, w) the network was trained at; only its aspect matters here.
        fit: `pad` grows the short side (the whole image is seen, centred), `crop`
            shrinks the long side (the centre is seen).

    Returns:
        The framing; the frame's aspect equals the training one up to one pixel of rounding.
    """
    (H, W), (h, w) = image_hw, train_hw
    if fit not in ("pad", "crop"):
        raise ValueError(f"fit is {fit!r}; allowed: pad | crop")
    pick = max if fit == "pad" else min
    fh = pick(H, max(1, round(W * h / w)))  # the height that has the training aspect at width W
    fw = pick(W, max(1, round(H * w / h)))
    return Framing(image_hw, (fh, fw), _centred(fh, H), _centred(fw, W))


def _centred(frame: int, image: int) -> int:
    """Offset of the image in a frame centred on it; the odd extra or cut pixel goes to the bottom/right."""
    return (frame - image) // 2 if frame >= image else -((image - frame) // 2)
