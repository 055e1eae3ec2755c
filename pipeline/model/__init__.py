"""The depth network, `build_model(ModelParams)`, and its checkpoint file.

The plain `UNet`, or a timm backbone under the U-Net decoder (`BackboneUNet`).
"""

from pipeline.model.backbone import BackboneUNet
from pipeline.model.build import DepthNet, build_model, check_model, encoder_parameters
from pipeline.model.serialize import FORMAT_VERSION, load_model, save_model
from pipeline.model.unet import UNet, check_input_size

__all__ = [
    "FORMAT_VERSION",
    "BackboneUNet",
    "DepthNet",
    "UNet",
    "build_model",
    "check_input_size",
    "check_model",
    "encoder_parameters",
    "load_model",
    "save_model",
]
