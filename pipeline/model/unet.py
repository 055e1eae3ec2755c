"""The depth U-Net, built from `ModelParams`.

An encoder whose multi-scale features can be tapped (e.g. by a pose network), a
decoder with concatenated skips, and a bounded positive depth head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.config import ModelParams, ParamsError
from pipeline.model.blocks import DoubleConv, Down, Up

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Initial prediction: NYUDv2's mean depth is ~2.7 m, so starting there (instead of at
# max_depth / 2 = 5 m) removes the first epochs' job of learning the global offset.
INIT_DEPTH = 2.75  # metres
# Floor of the output as a fraction of max_depth (1 mm at 10 m): the depth can never be
# 0 even if the sigmoid underflows, so log(depth) in the loss and metrics stays finite.
MIN_DEPTH_FRACTION = 1e-4
# Head weights start small so the initial map is ~INIT_DEPTH everywhere (+-few %), yet
# not zero, so the decoder gets a gradient from the very first step.
HEAD_INIT_STD = 0.01


def _largest_valid_depth(h: int, w: int) -> int:
    """The number of 2x poolings both sides survive exactly (trailing zero bits)."""
    return min((h & -h).bit_length(), (w & -w).bit_length()) - 1


def nearest_multiples(v: int, f: int) -> list[int]:
    """The multiples of f just below (if > 0) and above v."""
    lower = v // f * f
    return [m for m in (lower, lower + f) if m > 0]


def check_input_size(cfg: ModelParams, h: int, w: int) -> None:
    """Checks that the training resolution is divisible by 2**depth, so every pooling is exact.

    Raises:
        ParamsError: naming `preprocess.height`/`width` and `model.depth`, with the
            nearest valid sizes and the largest depth that fits.
    """
    f = 2**cfg.depth
    bad = [(key, v) for key, v in (("preprocess.height", h), ("preprocess.width", w)) if v % f]
    if not bad:
        return
    sizes = "; ".join(f"'{key}' {v} -> use {' or '.join(map(str, nearest_multiples(v, f)))}" for key, v in bad)
    best = _largest_valid_depth(h, w)
    depth_hint = f"or set 'model.depth' <= {best}" if best >= 1 else "no 'model.depth' >= 1 fits an odd size"
    raise ParamsError(
        f"params: input {h}x{w} is not divisible by 2**model.depth = {f} ('model.depth' is {cfg.depth}): "
        f"{sizes}; {depth_hint}"
    )


class DepthHead(nn.Module):
    """1x1 conv to one channel, mapped to metres by `max_depth * sigmoid(z)`.

    Why a sigmoid: the depth is bounded to (0, max_depth), so it is never 0 (finite logs)
    and never beyond the sensor range. With the log-depth loss, d log(depth)/dz =
    1 - sigmoid(z) (~1 for near and mid depths): the head behaves like a log-depth
    regressor there (no exp to blow up early in training) and saturates smoothly only
    as depth approaches max_depth. The head runs in float32 even under autocast: at
    z ~ -1, bf16's 8-bit mantissa would quantise depth in ~0.5% steps.
    """

    def __init__(self, c_in: int, max_depth: float) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.conv = nn.Conv2d(c_in, 1, 1)
        init = min(INIT_DEPTH, max_depth / 2)
        frac = (init / max_depth - MIN_DEPTH_FRACTION) / (1 - MIN_DEPTH_FRACTION)
        nn.init.normal_(self.conv.weight, std=HEAD_INIT_STD)
        assert self.conv.bias is not None
        nn.init.constant_(self.conv.bias, math.log(frac / (1 - frac)))  # logit: sigmoid(bias) = frac

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) decoder features -> (B, 1, H, W) metres in (0, max_depth), float32."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = self.conv(x.float())  # (B, 1, H, W)
            frac = MIN_DEPTH_FRACTION + (1 - MIN_DEPTH_FRACTION) * torch.sigmoid(z)
            return self.max_depth * frac  # (B, 1, H, W) metres in (0, max_depth)


class UNet(nn.Module):
    """U-Net depth network: RGB in [0, 1] (B, 3, H, W) -> depth in metres (B, 1, H, W).

    Any H, W >= 2**depth runs (the decoder upsamples to each skip's size), but sizes
    divisible by 2**depth keep every pooling exact: `check_input_size` enforces that
    for the training resolution.
    """

    def __init__(
        self,
        cfg: ModelParams,
        rgb_mean: tuple[float, ...] | list[float] = IMAGENET_MEAN,
        rgb_std: tuple[float, ...] | list[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.rgb_mean: torch.Tensor  # (1, 3, 1, 1), registered as buffers below
        self.rgb_std: torch.Tensor
        # Buffers, so they travel in the state_dict: the checkpoint alone is enough to
        # normalise at inference, whatever dataset statistics training used.
        self.register_buffer("rgb_mean", torch.tensor(rgb_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor(rgb_std, dtype=torch.float32).view(1, 3, 1, 1))
        C, norm, act = cfg.base_channels, cfg.norm, cfg.activation
        widths = [C * 2**k for k in range(cfg.depth + 1)]  # C, 2C, ..., 2^depth C
        self.stem = DoubleConv(3, C, norm, act)
        self.downs = nn.ModuleList(Down(widths[k], widths[k + 1], norm, act) for k in range(cfg.depth))
        # Channel-wise (spatial) dropout: neighbouring activations are correlated, so
        # dropping single pixels barely regularises a conv net (Tompson et al., 2015).
        self.dropout = nn.Dropout2d(cfg.dropout)
        # Up level k: from width 2^(k+1) C (deeper) with the width 2^k C skip, to 2^k C.
        self.ups = nn.ModuleList(Up(widths[k + 1], widths[k], widths[k], norm, act) for k in range(cfg.depth))
        self.head = DepthHead(C, cfg.max_depth)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale encoder features, finest first.

        Args:
            x: (B, 3, H, W) RGB in [0, 1].

        Returns:
            depth + 1 tensors: [(B, C, H, W), (B, 2C, H/2, W/2), ...,
            (B, 2^depth C, H/2^depth, W/2^depth)] with C = base_channels; the last is
            the bottleneck. These are exactly what the decoder consumes.
        """
        x = (x - self.rgb_mean) / self.rgb_std  # (B, 3, H, W) standardised
        feats = [self.stem(x)]  # (B, C, H, W)
        for down in self.downs:
            feats.append(down(feats[-1]))  # (B, 2^k C, H/2^k, W/2^k)
        return feats

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Depth (B, 1, H, W) in metres from the `encode` features."""
        x = self.dropout(feats[-1])  # (B, 2^depth C, H/2^depth, W/2^depth)
        for k in reversed(range(self.cfg.depth)):
            x = self.ups[k](x, feats[k])  # (B, 2^k C, H/2^k, W/2^k)
        return self.head(x)  # (B, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Depth in metres, (B, 1, H, W), in (0, max_depth), float32 (even under autocast)."""
        return self.decode(self.encode(x))

    def pretrained_encoder(self) -> nn.Module | None:
        """None: the plain U-Net's encoder is always trained from scratch, at `train.lr`."""
        return None
