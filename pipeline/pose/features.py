"""Feature pyramids to align: the depth network's encoder features, or image intensities.

A `Pyramid` holds one (B, C, h, w) map per stride s. Feature pixel k of a stride-s map
covers input pixels [k s, (k + 1) s), so its centre is at k s + (s - 1) / 2 in the
input's 0-based pixel coordinates: the mapping `Intrinsics.scaled(W / s, H / s)` makes,
which is what `pipeline.pose.warp.level_intrinsics` uses. Both kinds follow it: the
U-Net's max-pool and a backbone's strided convs (on an input zero-padded at the bottom
and right only) and the intensities' average pooling.

Normalisation (why): the Huber scale is set from the residuals themselves, but the
cost at different levels should still weigh pixels alike, and a learned feature's
magnitude varies with the activation, not with the match. Encoder features are
therefore centred (each channel's mean over the image removed: post-ReLU maps share a
large positive offset that would make every pixel's direction alike) and then
L2-normalised over channels per pixel (as PixLoc and GN-Net do): each pixel's feature
is a unit vector and a residual's norm is in [0, 2] at every level. On 8 synthetic
pairs (3 cm, 2 deg) centring halved the untrained tiny encoder's median error against
plain L2 (docs/pose.md).
Intensities are standardised per image and channel (zero mean, unit standard
deviation), which also cancels a global exposure change between the two frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from pipeline.model.build import DepthNet, build_model

FeatureKind = Literal["encoder", "rgb"]
FEATURE_KINDS: tuple[str, ...] = ("encoder", "rgb")
RGB_STRIDES = (1, 2, 4, 8, 16)  # what average pooling of the image offers
EPS = 1e-6  # guards the normalisations against an all-zero pixel or a flat image


@dataclass(frozen=True)
class Pyramid:
    """Feature maps of a batch of frames, coarsest last.

    Attributes:
        levels: (B, C_l, h_l, w_l) float32 maps, one per stride, in `strides` order.
        strides: input pixels per feature pixel of each map, increasing.
        image_hw: (H, W) of the frames they were computed from.
        kind: `encoder` or `rgb`.
    """

    levels: tuple[torch.Tensor, ...]
    strides: tuple[int, ...]
    image_hw: tuple[int, int]
    kind: str

    def take(self, index: slice | torch.Tensor | list[int]) -> Pyramid:
        """The frames `index` picks (a slice, or indices) as a pyramid: e.g. targets `[:-1]`, sources `[1:]`."""
        return Pyramid(tuple(f[index] for f in self.levels), self.strides, self.image_hw, self.kind)

    @staticmethod
    def cat(pyramids: list[Pyramid]) -> Pyramid:
        """The frames of several pyramids of one kind, strides and size, in order (e.g. chunks of a sequence)."""
        first = pyramids[0]
        if any((p.strides, p.image_hw, p.kind) != (first.strides, first.image_hw, first.kind) for p in pyramids):
            raise ValueError("pyramids differ in kind, strides or frame size")
        levels = tuple(torch.cat(maps) for maps in zip(*(p.levels for p in pyramids), strict=True))
        return Pyramid(levels, first.strides, first.image_hw, first.kind)


def model_strides(model: DepthNet) -> tuple[int, ...]:
    """The stride of each map `model.encode` returns: 2^k for the U-Net, the backbone's reductions otherwise."""
    reductions = getattr(model, "reductions", None)
    if reductions is not None:
        return tuple(int(r) for r in reductions)
    return tuple(2**k for k in range(model.cfg.depth + 1))


def _pick(maps: list[torch.Tensor], have: tuple[int, ...], want: tuple[int, ...]) -> tuple[tuple, tuple]:
    """The maps at the wanted strides that exist (at least one must)."""
    keep = [i for i, s in enumerate(have) if s in want]
    if not keep:
        raise ValueError(f"none of the strides {want} is available; this pyramid has {have}")
    return tuple(maps[i] for i in keep), tuple(have[i] for i in keep)


def _encoder_pyramid(model: DepthNet, feats: list[torch.Tensor], want: tuple[int, ...], hw: tuple[int, int]) -> Pyramid:
    """The encoder's maps at the wanted strides, centred and L2-normalised per pixel."""
    maps = [f.float() for f in feats]  # finest first
    maps = [f - f.mean(dim=(2, 3), keepdim=True) for f in maps]  # centred per image and channel
    maps = [f / (f.norm(dim=1, keepdim=True) + EPS) for f in maps]  # (B, C_l, h_l, w_l) unit vectors
    levels, kept = _pick(maps, model_strides(model), want)
    return Pyramid(levels=levels, strides=kept, image_hw=hw, kind="encoder")


@torch.no_grad()
def extract(model: DepthNet | None, rgb: torch.Tensor, kind: str, strides: tuple[int, ...]) -> Pyramid:
    """The feature pyramid of a batch of frames.

    Args:
        model: the depth network (needed for `encoder`, ignored for `rgb`); its own
            device and mode are used, so call `.eval()` first (dropout off).
        rgb: (B, 3, H, W) RGB in [0, 1], on the model's device.
        kind: `encoder` (the network's `encode` maps, centred and L2-normalised per
            pixel) or `rgb` (the standardised channels, average-pooled to each stride).
        strides: the levels wanted, e.g. (1, 2, 4, 8); those the features do not offer
            are left out (a depth-2 U-Net has no stride 8).

    Returns:
        The `Pyramid`, float32.
    """
    hw = (int(rgb.shape[-2]), int(rgb.shape[-1]))
    want = tuple(sorted(strides))
    if kind == "encoder":
        if model is None:
            raise ValueError("features 'encoder' need the depth network")
        return _encoder_pyramid(model, model.encode(rgb), want, hw)
    if kind != "rgb":
        raise ValueError(f"unknown feature kind {kind!r}; allowed: {', '.join(FEATURE_KINDS)}")
    x = rgb.float()  # (B, 3, H, W)
    x = (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + EPS)
    have = tuple(s for s in RGB_STRIDES if s in want)
    levels, kept = _pick([x if s == 1 else F.avg_pool2d(x, s) for s in have], have, want)
    return Pyramid(levels=levels, strides=kept, image_hw=hw, kind="rgb")


@torch.no_grad()
def extract_with_depth(model: DepthNet, rgb: torch.Tensor, strides: tuple[int, ...]) -> tuple[Pyramid, torch.Tensor]:
    """The encoder pyramid and the predicted depth from one encoder pass (`encoder` + `predicted`).

    Returns:
        (pyramid, depth (B, 1, H, W) metres): `model(rgb)` without running the encoder twice.
    """
    H, W = rgb.shape[-2:]
    feats = model.encode(rgb)
    depth = model.decode(feats)[..., :H, :W]  # a backbone decodes at its padded size
    return _encoder_pyramid(model, feats, tuple(sorted(strides)), (int(H), int(W))), depth


def untrained_copy(model: DepthNet, seed: int = 0) -> DepthNet:
    """The same architecture with its initial weights (the control that isolates what training adds).

    Built fresh from the model's own config and input normalisation under `seed`, on the
    model's device, in eval mode; the global RNG state is left as it was. A pretrained
    backbone is rebuilt randomly initialised (no weights are fetched here).
    """
    device = next(model.parameters()).device
    mean = model.rgb_mean.flatten().tolist()
    std = model.rgb_std.flatten().tolist()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_model(model.cfg, mean, std)
    return fresh.to(device).eval()
