"""U-Net building blocks: a double conv, one encoder level (down) and one decoder level (up, with or without a skip)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import Activation, Norm, choices

NORMS = choices(Norm)
ACTIVATIONS = choices(Activation)

# GroupNorm groups: 8 is the usual choice for narrow conv nets (Wu & He use 32 for
# ResNets with >= 64 channels); gcd keeps it a divisor of any channel count.
_MAX_GROUPS = 8


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalisation layer over `channels` feature maps (`batch | group | none`)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, _MAX_GROUPS), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; allowed: {' | '.join(NORMS)}")


def make_activation(kind: str) -> nn.Module:
    """A pointwise non-linearity (`relu | gelu | silu`)."""
    layers = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
    if kind not in layers:
        raise ValueError(f"unknown activation {kind!r}; allowed: {' | '.join(ACTIVATIONS)}")
    return layers[kind](inplace=True) if kind != "gelu" else nn.GELU()


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> activation) x 2, at constant resolution."""

    def __init__(self, c_in: int, c_out: int, norm: str, activation: str) -> None:
        # A conv bias right before a norm layer is cancelled by the norm's mean subtraction.
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias),
            make_norm(norm, c_out),
            make_activation(activation),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
            make_norm(norm, c_out),
            make_activation(activation),
        )


class Down(nn.Sequential):
    """One encoder level: 2x2 max-pool, then a double conv (C -> C_out at half resolution).

    Max-pooling (as in the original U-Net) keeps the strongest edge response, which
    matters for depth discontinuities, and costs no parameters.
    """

    def __init__(self, c_in: int, c_out: int, norm: str, activation: str) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(c_in, c_out, norm, activation))


def _upsample2x_rows(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Bilinear 2x upsampling along `dim` (align_corners=False, edges clamped) from slices.

    Output 2i is 0.75 x[i] + 0.25 x[i-1] and 2i+1 is 0.75 x[i] + 0.25 x[i+1]: exactly
    what `F.interpolate` computes, but built from slicing, concatenation and arithmetic,
    whose backward passes are deterministic on CUDA (interpolate's accumulates with
    atomics, so `torch.use_deterministic_algorithms(True)` refuses it).
    """
    n = x.shape[dim]
    prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)  # x[i-1], clamped
    nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)  # x[i+1], clamped
    pair = torch.stack([0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt], dim + 1)  # (..., n, 2, ...)
    return pair.flatten(dim, dim + 1)  # (..., 2n, ...): even, odd, even, odd, ...


def upsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of (B, C, h, w) to `size`; deterministic when the factor is exactly 2.

    Training sizes are divisible by 2**depth, so every decoder level is an exact 2x and
    takes the slice-based path under `torch.use_deterministic_algorithms(True)`
    (`train.deterministic`). Other sizes (inference on an odd image) use `F.interpolate`.
    """
    h, w = x.shape[-2:]
    if torch.are_deterministic_algorithms_enabled() and tuple(size) == (2 * h, 2 * w) and h > 1 and w > 1:
        return _upsample2x_rows(_upsample2x_rows(x, 2), 3)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling of (B, C, h, w); deterministic as `upsample_to`.

    By scale factor, not by a size computed from `x.shape`: an ONNX trace keeps a scale
    factor but freezes a size computed in Python at the traced input's.
    """
    h, w = x.shape[-2:]
    if torch.are_deterministic_algorithms_enabled() and h > 1 and w > 1:
        return _upsample2x_rows(_upsample2x_rows(x, 2), 3)
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class Up(nn.Module):
    """One decoder level: bilinear 2x upsampling, concatenation with the skip, double conv.

    Bilinear upsampling plus convs avoids the checkerboard artefacts of transposed
    convolutions (Odena et al., 2016), which show up as grid patterns in depth maps.
    """

    def __init__(self, c_in: int, c_skip: int, c_out: int, norm: str, activation: str) -> None:
        super().__init__()
        self.conv = DoubleConv(c_in + c_skip, c_out, norm, activation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H/2, W/2) deeper features and the (B, C_skip, H, W) skip -> (B, C_out, H, W)."""
        # Upsample to the skip's exact size rather than by 2, so odd sizes (floored by
        # the max-pool) still line up instead of failing in torch.cat.
        x = upsample_to(x, (skip.shape[-2], skip.shape[-1]))  # (B, C_in, H, W)
        return self.conv(torch.cat([x, skip], dim=1))  # (B, C_out, H, W)


class UpNoSkip(nn.Module):
    """A decoder level without a skip: bilinear 2x upsampling, then a double conv.

    For backbones whose first feature map is at 1/2 or 1/4 of the input (ResNets, ConvNeXt):
    these levels bring the decoder back to the input resolution.
    """

    def __init__(self, c_in: int, c_out: int, norm: str, activation: str) -> None:
        super().__init__()
        self.conv = DoubleConv(c_in, c_out, norm, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, h, w) -> (B, C_out, 2h, 2w)."""
        return self.conv(upsample2x(x))
