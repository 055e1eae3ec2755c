"""The depth network: `UNet` and its config, and checkpoint save/load."""

from pipeline.model.checkpoint import FORMAT_VERSION, load_model, save_model
from pipeline.model.unet import UNet, UNetConfig

__all__ = ["FORMAT_VERSION", "UNet", "UNetConfig", "load_model", "save_model"]
