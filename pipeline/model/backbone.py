"""The U-Net with a timm backbone as its encoder (`model.encoder`: a timm model name).

The encoder is timm's `features_only` model: multi-scale feature maps at reductions
r_0 < ... < r_n (e.g. 2, 4, 8, 16, 32 for a ResNet). The decoder is the plain U-Net's:
from the deepest map, bilinear upsampling, concatenation with the next skip, a double
conv; then skip-free levels up to the input resolution when r_0 is 2 or 4; and the
same bounded depth head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import ModelParams, ParamsError
from pipeline.model._timm_compat import import_timm
from pipeline.model.blocks import Up, UpNoSkip
from pipeline.model.unet import DepthHead


def _is_power_of_two(r: int) -> bool:
    return r >= 1 and r & (r - 1) == 0


def create_encoder(name: str, state: Mapping[str, torch.Tensor] | None = None) -> Any:
    """The timm `features_only` model `name`, randomly initialised or with the weights in `state`.

    `state` is a state dict of the full timm model (as checked by
    `pipeline.model.pretrained`); timm drops its classifier and maps the rest onto the
    feature model. Nothing is downloaded here.

    Raises:
        ParamsError: `name` is not a timm model, or one without `features_only` support.
    """
    timm = import_timm()
    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ParamsError(
            f"params: 'model.encoder' is {name!r}, which is not a timm model; {hint}"
            "allowed: unet or a timm model name (timm.list_models())"
        )
    kwargs: dict = {"features_only": True, "pretrained": state is not None}
    if state is not None:
        # timm's own way to load a given state dict: with source "state_dict" it never goes online.
        kwargs["pretrained_cfg_overlay"] = {"state_dict": dict(state)}
    try:
        return timm.create_model(name, **kwargs)
    except (RuntimeError, ValueError, TypeError, AssertionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ParamsError(
            f"params: 'model.encoder' {name!r} cannot serve as a U-Net encoder (timm features_only: {first}); "
            "pick another backbone (README: Encoders)"
        ) from None


class BackboneUNet(nn.Module):
    """timm backbone + U-Net decoder: RGB in [0, 1] (B, 3, H, W) -> depth in metres (B, 1, H, W).

    Any H, W runs: the standardised input is zero-padded at the bottom and right to a
    multiple of the largest reduction (240x320 runs as 256x320 for a stride-32 ResNet)
    and the depth is cropped back, so every skip lines up exactly with the map it joins.
    """

    def __init__(self, cfg: ModelParams, encoder_state: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        encoder = create_encoder(cfg.encoder, encoder_state)  # a timm FeatureListNet (or similar)
        self.encoder: nn.Module = encoder
        info = encoder.feature_info
        channels, reductions = list(info.channels()), list(info.reduction())
        if not all(map(_is_power_of_two, reductions)) or reductions != sorted(reductions):
            raise ParamsError(
                f"params: 'model.encoder' {cfg.encoder!r} has feature maps at 1/{reductions} of the input; "
                "the U-Net decoder needs increasing powers of two; pick another backbone"
            )
        self.reductions = reductions
        # The backbone's own input normalisation (ImageNet's for the checked ones), as buffers:
        # a checkpoint alone normalises like training did.
        pcfg = encoder.pretrained_cfg
        self.rgb_mean: torch.Tensor  # (1, 3, 1, 1)
        self.rgb_std: torch.Tensor
        self.register_buffer("rgb_mean", torch.tensor(pcfg["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor(pcfg["std"], dtype=torch.float32).view(1, 3, 1, 1))
        C, norm, act = cfg.base_channels, cfg.norm, cfg.activation
        # Decoder width at 1/r of the input: C * r, the plain U-Net's schedule (C at full resolution).
        widths = [C * r for r in reductions]
        self.dropout = nn.Dropout2d(cfg.dropout)  # channel-wise, at the bottleneck, as in the U-Net
        # Up level k: from the deeper map (the backbone's last, or up level k+1) with skip k, to widths[k].
        deeper = [*widths[1:-1], channels[-1]]
        self.ups = nn.ModuleList(Up(deeper[k], channels[k], widths[k], norm, act) for k in range(len(reductions) - 1))
        # Skip-free 2x levels from 1/r_0 to full resolution: widths C * r_0/2, ..., C.
        tail = [C * 2**j for j in reversed(range(reductions[0].bit_length() - 1))]  # r_0 = 4: [2C, C]
        ins = [widths[0], *tail[:-1]]
        self.tail = nn.ModuleList(UpNoSkip(c_in, c_out, norm, act) for c_in, c_out in zip(ins, tail, strict=True))
        self.head = DepthHead(C, cfg.max_depth)

    def encode(self, x: torch.Tensor, pad: bool = True) -> list[torch.Tensor]:
        """The backbone's multi-scale features, largest first.

        Args:
            x: (B, 3, H, W) RGB in [0, 1].
            pad: pad H, W up to the stride; False for an input known to be a multiple of
                it (the export's trace, where a branch on the size would be frozen).

        Returns:
            [(B, C_i, Hp/r_i, Wp/r_i), ...] for the backbone's reductions r_i, where Hp, Wp
            are H, W rounded up to a multiple of the largest r_i (the padded input).
        """
        x = (x - self.rgb_mean) / self.rgb_std  # (B, 3, H, W) standardised
        if not pad:
            return list(self.encoder(x))
        m = self.reductions[-1]
        pad_h, pad_w = -x.shape[-2] % m, -x.shape[-1] % m
        if pad_h or pad_w:
            # Zeros of the standardised image: the mean colour, what each conv's own zero
            # padding already shows the network at the border.
            x = F.pad(x, (0, pad_w, 0, pad_h))  # (B, 3, Hp, Wp)
        return list(self.encoder(x))

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Depth (B, 1, Hp, Wp) in metres from the `encode` features (at the padded size)."""
        x = self.dropout(feats[-1])  # (B, C_n, Hp/r_n, Wp/r_n)
        for k in reversed(range(len(self.ups))):
            x = self.ups[k](x, feats[k])  # (B, C * r_k, Hp/r_k, Wp/r_k)
        for up in self.tail:
            x = up(x)  # 2x per level, to (B, C, Hp, Wp)
        return self.head(x)  # (B, 1, Hp, Wp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Depth in metres, (B, 1, H, W), in (0, max_depth), float32 (even under autocast)."""
        h, w = x.shape[-2:]
        return self.decode(self.encode(x))[..., :h, :w]  # crop the padding away

    def pretrained_encoder(self) -> nn.Module | None:
        """The backbone when it started from pretrained weights (trained at `train.encoder_lr_mult`)."""
        return self.encoder if self.cfg.pretrained else None
