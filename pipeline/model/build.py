"""One entry point for every depth network: `build_model(cfg)` picks the plain U-Net or a backbone.

timm (and torchvision) are imported only when a backbone is built: the default U-Net never
imports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from pipeline.config import UNET_ENCODER, ModelParams
from pipeline.model.backbone import BackboneUNet, create_encoder
from pipeline.model.unet import IMAGENET_MEAN, IMAGENET_STD, UNet, check_input_size

DepthNet = UNet | BackboneUNet
MODEL_TYPES = (UNet, BackboneUNet)


def build_model(
    cfg: ModelParams,
    rgb_mean: Sequence[float] = IMAGENET_MEAN,
    rgb_std: Sequence[float] = IMAGENET_STD,
    encoder_state: Mapping[str, torch.Tensor] | None = None,
) -> DepthNet:
    """The depth network of `cfg.encoder`, randomly initialised unless `encoder_state` is given.

    Args:
        cfg: the model params.
        rgb_mean: input normalisation of the plain U-Net (the training set's statistics);
            a backbone uses the normalisation its weights were trained with instead.
        rgb_std: likewise.
        encoder_state: a backbone's starting weights (`pipeline.model.pretrained.encoder_state`);
            never downloaded here, so rebuilding a checkpoint needs no network.

    Raises:
        ParamsError: `model.encoder` names no usable timm backbone.
    """
    if cfg.encoder == UNET_ENCODER:
        return UNet(cfg, tuple(rgb_mean), tuple(rgb_std))
    return BackboneUNet(cfg, encoder_state)


def check_model(cfg: ModelParams, h: int, w: int) -> None:
    """Checks, before any data is loaded, that the model can be built and train at `h`x`w`.

    The plain U-Net needs H and W divisible by 2**model.depth (`check_input_size`); a
    backbone takes any size (its input is padded to its largest stride), but its name must
    be a timm model with `features_only` support.

    Raises:
        ParamsError: naming `preprocess.height`/`width` and `model.depth`, or `model.encoder`.
    """
    if cfg.encoder == UNET_ENCODER:
        check_input_size(cfg, h, w)
        return
    with torch.device("meta"):  # the architecture only: no memory, no init
        create_encoder(cfg.encoder)


def encoder_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters of a pretrained encoder (trained at `train.encoder_lr_mult`); [] for none."""
    net = getattr(net, "_orig_mod", net)  # torch.compile's wrapper
    enc = net.pretrained_encoder() if isinstance(net, MODEL_TYPES) else None
    return list(enc.parameters()) if enc is not None else []
