"""The one device choice: `auto` picks CUDA, then MPS, then the CPU (train, evaluate, predict)."""

from __future__ import annotations

import functools

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


CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bf16 matrix units


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AMX or AVX512-BF16.

    Elsewhere bf16 is emulated and slower than float32 (the demo measured it: scripts/demo.sh).
    The CPU's flags are read from /proc/cpuinfo (Linux); without it, False.
    """
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_bf16()


@functools.cache
def _cpu_has_bf16() -> bool:
    """The CPU's bf16 flags, read once a process (feature extraction asks for every frame)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)
