"""The depth network: `UNet` (built from `ModelParams`), and its checkpoint file."""

from pipeline.model.serialize import FORMAT_VERSION, load_model, save_model
from pipeline.model.unet import UNet, check_input_size

__all__ = ["FORMAT_VERSION", "UNet", "check_input_size", "load_model", "save_model"]
