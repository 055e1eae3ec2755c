"""The training data on the device: a resident split, batched and augmented there.

The processed train split of the labeled set is small (795 images at 240x320 is
~180 MB as uint8), so by default (`train.data: device`, or `auto` when it fits) it is
copied to the device once; every step then only gathers rows of a tensor already
there and augments them with batched tensor ops. No loader, no host-device copy and
no per-image Python in the step. Splits too large for that are streamed from disk
instead (`pipeline.training.stream_data`), through the same `to_model_layout` and
`as_unit_float`, so both paths feed the step bit-identical batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from pipeline.data.datasets import read_split
from pipeline.training.distributed import DistContext

# ITU-R BT.601 luma weights, for contrast and saturation around the grey image.
_LUMA = (0.299, 0.587, 0.114)


class TrainingSplit(Protocol):
    """A split the training loop draws batches from: on the device (`DeviceSplit`) or streamed."""

    def __len__(self) -> int: ...

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the images."""
        ...

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """For each 1-D tensor of row indices: (rgb (B, 3, H, W) float in [0, 1], depth (B, 1, H, W) metres)."""
        ...


def to_model_layout(rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Host rows rgb (N, H, W, 3) uint8 and depth (N, H, W) metres -> (N, 3, H, W) uint8, (N, 1, H, W) float32."""
    return rgb.permute(0, 3, 1, 2).contiguous(), depth.unsqueeze(1).float()


def as_unit_float(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]: the one conversion both data paths use."""
    return rgb.float().div_(255.0)


@dataclass(frozen=True)
class DeviceSplit:
    """A whole split on one device."""

    rgb: torch.Tensor  # (N, 3, H, W) uint8
    depth: torch.Tensor  # (N, 1, H, W) float32 metres (filled)

    def __len__(self) -> int:
        return self.rgb.shape[0]

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return self.rgb.shape[-2], self.rgb.shape[-1]

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Gathers each batch of rows from the tensors already on the device."""
        for idx in index_batches:
            yield gather_batch(self, idx)


def to_device_split(rgb: torch.Tensor, depth: torch.Tensor, device: torch.device) -> DeviceSplit:
    """From host tensors rgb (N, H, W, 3) uint8 and depth (N, H, W) metres."""
    rgb, depth = to_model_layout(rgb, depth)
    return DeviceSplit(rgb=rgb.to(device), depth=depth.to(device))


def load_split_to_device(path: str | Path, device: torch.device) -> DeviceSplit:
    """Reads a processed split file (train or val) and keeps rgb and filled depth on `device`."""
    arrays = read_split(path)
    return to_device_split(torch.from_numpy(arrays.rgb), torch.from_numpy(arrays.depth), device)


def epoch_batches(n: int, batch_size: int, ctx: DistContext, gen: torch.Generator) -> torch.Tensor:
    """This rank's image indices for one epoch, (steps, batch_size), on the generator's device.

    Every rank draws the same permutation (same generator seed) and takes its own
    column of each global batch, so the ranks see disjoint images. The remainder that
    does not fill a global batch is dropped: BatchNorm needs more than one image, and
    equal step counts keep DDP's ranks in lockstep.
    """
    global_batch = batch_size * ctx.world_size
    steps = n // global_batch
    perm = torch.randperm(n, generator=gen, device=gen.device)  # (N,)
    return perm[: steps * global_batch].view(steps, ctx.world_size, batch_size)[:, ctx.rank]


def gather_batch(split: DeviceSplit, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `idx` as (rgb (B, 3, H, W) float in [0, 1], depth (B, 1, H, W) metres)."""
    return as_unit_float(split.rgb.index_select(0, idx)), split.depth.index_select(0, idx)


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (NYU-style: mild, geometry-consistent)."""

    max_scale: float = 1.25  # zoom in by up to 25%; more loses too much of a 240x320 view
    flip_p: float = 0.5
    brightness: float = 0.2  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    channel_swap_p: float = 0.5  # colour statistics differ between scenes; depth does not depend on hue


def _geometry(
    rgb: torch.Tensor, depth: torch.Tensor, u: torch.Tensor, cfg: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip + zoom-in crop, as one affine resampling of the batch."""
    B, _, H, W = rgb.shape
    s = 1.0 + (cfg.max_scale - 1.0) * u[:, 0]  # (B,) zoom factor >= 1
    sign = torch.where(u[:, 1] < cfg.flip_p, -1.0, 1.0)  # (B,) mirror x
    slack = 1.0 - 1.0 / s  # how far the crop centre may move and stay inside the image
    tx, ty = (2 * u[:, 2] - 1) * slack, (2 * u[:, 3] - 1) * slack  # (B,) crop centre
    # The sampling grid of the affine map (x, y) -> (sign x / s + tx, y / s + ty), in
    # grid_sample's [-1, 1] pixel-centre coordinates (align_corners=False). The map has
    # no rotation, so the grid is separable: built by broadcasting, not by
    # F.affine_grid's (B, H*W, 3) x (B, 3, 2) product, which costs 3x more on the CPU.
    xs = (torch.arange(W, device=rgb.device) * 2 + 1) / W - 1  # (W,)
    ys = (torch.arange(H, device=rgb.device) * 2 + 1) / H - 1  # (H,)
    gx = ((sign / s).view(B, 1, 1) * xs.view(1, 1, W) + tx.view(B, 1, 1)).expand(B, H, W)
    gy = ((1.0 / s).view(B, 1, 1) * ys.view(1, H, 1) + ty.view(B, 1, 1)).expand(B, H, W)
    grid = torch.stack((gx, gy), dim=-1)  # (B, H, W, 2)
    rgb = F.grid_sample(rgb, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Nearest for depth: interpolating across an occlusion edge would invent depths
    # that exist nowhere in the scene.
    depth = F.grid_sample(depth, grid, mode="nearest", padding_mode="border", align_corners=False)
    # Zooming in by s makes every object s times larger on screen, which is what the
    # camera would see from s times closer (apparent size ~ 1/distance): divide the
    # depth by s so that the image and its depth still describe the same geometry.
    return rgb, depth / s.view(B, 1, 1, 1)


def colour_matrices(u: torch.Tensor, cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image brightness b, contrast c, saturation s and channel permutation as one linear map.

    In sequence: x*b; contrast (x - m)*c + m around the mean grey m; saturation
    (x - grey)*s + grey; then a channel permutation P. Every step is linear in the RGB
    vector, so y = A x + c0 with A = b c P (s I + (1 - s) 1 luma^T) and the offset
    m (1 - c) on every channel (the luma weights sum to 1, so the offset survives the
    saturation and permutation unchanged). One pass over the pixels instead of ten.

    Args:
        u: (B, 11) uniforms; columns 4-10 are used.
        cfg: the augmentation's ranges.

    Returns:
        A (B, 3, 3), the brightness b (B,) and the contrast c (B,); the offset needs
        the image's mean grey, see `_colour`.
    """
    B, dev = u.shape[0], u.device
    b, c, s = ((1.0 + amount * (2 * u[:, col] - 1)) for col, amount in
               ((4, cfg.brightness), (5, cfg.contrast), (6, cfg.saturation)))  # fmt: skip
    luma = torch.tensor(_LUMA, device=dev)
    eye = torch.eye(3, device=dev)
    sat = s.view(B, 1, 1) * eye + (1 - s).view(B, 1, 1) * luma.view(1, 1, 3)  # (B, 3, 3); every row mixes in the grey
    perm = u[:, 8:11].argsort(1)  # (B, 3) a uniform random permutation per image
    perm = torch.where((u[:, 7] < cfg.channel_swap_p).view(B, 1), perm, torch.arange(3, device=dev))
    P = (perm.unsqueeze(-1) == torch.arange(3, device=dev)).to(u.dtype)  # (B, 3, 3): out i <- in perm[i]
    return (b * c).view(B, 1, 1) * (P @ sat), b, c


def _colour(rgb: torch.Tensor, u: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Random brightness, contrast, saturation and channel permutation, per image, in one pass."""
    B, C, H, W = rgb.shape
    A, b, c = colour_matrices(u, cfg)
    luma = torch.tensor(_LUMA, device=rgb.device)
    grey_mean = b * (rgb.mean((2, 3)) @ luma)  # (B,) mean grey after the brightness change
    offset = (grey_mean * (1 - c)).view(B, 1, 1)  # (B, 1, 1)
    out = torch.baddbmm(offset, A, rgb.reshape(B, C, H * W))  # (B, 3, H*W) = offset + A x
    return out.view(B, C, H, W).clamp_(0.0, 1.0)


def augment(
    rgb: torch.Tensor, depth: torch.Tensor, gen: torch.Generator, cfg: AugmentConfig = AugmentConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augments a batch on its device: rgb (B, 3, H, W) in [0, 1], depth (B, 1, H, W) metres.

    All random numbers of the batch come from one draw of `gen` (seeded, on the
    same device), so the augmentation is reproducible and costs one kernel for RNG.
    """
    u = torch.rand(rgb.shape[0], 11, generator=gen, device=rgb.device)  # (B, 11) uniforms
    rgb, depth = _geometry(rgb, depth, u, cfg)
    return _colour(rgb, u, cfg), depth
