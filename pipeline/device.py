"""The one device choice: `auto` picks CUDA, then MPS, then the CPU (train, evaluate, predict)."""

from __future__ import annotations

import torch

from pipeline.config import DeviceName, choices
from pipeline.errors import PipelineError

DEVICES = choices(DeviceName)


def pick_device(name: str = "auto", key: str = "device") -> torch.device:
    """Resolves a device name to a torch device.

    Args:
        name: auto | cuda | mps | cpu.
        key: what the user set it with (e.g. "params: train.device"), for error messages.

    Raises:
        PipelineError: if the name is unknown or the named accelerator is not available.
    """
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name not in DEVICES:
        raise PipelineError(f"{key} '{name}' is unknown; use {' | '.join(DEVICES)}")
    if name == "cuda" and not cuda:
        raise PipelineError(f"{key} is 'cuda' but no CUDA GPU is visible; use auto or cpu")
    if name == "mps" and not mps:
        raise PipelineError(f"{key} is 'mps' but MPS is not available; use auto or cpu")
    return torch.device(name)
