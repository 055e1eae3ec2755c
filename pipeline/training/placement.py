"""Where the training data lives: resident on the device, or streamed from disk (`train.data`).

`device` copies the train and val splits to the device once (fastest: a step only
gathers rows); `stream` reads batches from the processed HDF5 files while the model
trains; `auto` keeps them on the device when both fit in `DEVICE_SHARE` of the
device's free memory and streams otherwise, and logs which it chose and why.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from pipeline.data.datasets import SplitReader
from pipeline.training.device_data import TrainingSplit, load_split_to_device
from pipeline.training.stream_data import open_stream_split

log = logging.getLogger(__name__)

# The share of free device memory the resident splits may take: the rest is for the
# model, its activations at the training batch, the optimiser state and the allocator.
DEVICE_SHARE = 0.5
# A resident image: uint8 rgb (3 bytes) + float32 filled depth (4 bytes) per pixel.
RESIDENT_BYTES_PER_PIXEL = 3 + 4


def resident_bytes(paths: list[Path]) -> int:
    """Bytes the splits at `paths` take on the device when resident."""
    total = 0
    for path in paths:
        reader = SplitReader(path)
        try:
            h, w = reader.hw
            total += len(reader) * h * w * RESIDENT_BYTES_PER_PIXEL
        finally:
            reader.close()
    return total


def free_bytes(device: torch.device) -> int:
    """Free memory of `device`: CUDA's free memory, MPS's recommended working set, or the host's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "mps":
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    try:
        import psutil  # noqa: PLC0415  # optional: MLflow brings it; the GPU machine may not have it

        return int(psutil.virtual_memory().available)
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose(mode: str, need: int, free: int) -> tuple[str, str]:
    """Resolves `train.data` to `device` or `stream`, with the reason (for the log).

    Args:
        mode: auto | device | stream.
        need: bytes the splits take when resident (`resident_bytes`).
        free: the device's free bytes (`free_bytes`).
    """
    if mode != "auto":
        return mode, f"train.data: {mode} (train+val take {need / 1e9:.2f} GB resident)"
    gb = f"train+val take {need / 1e9:.2f} GB resident, {free / 1e9:.1f} GB free on the device"
    if need <= DEVICE_SHARE * free:
        return "device", f"train.data auto -> device: {gb}, within the {DEVICE_SHARE:.0%} share"
    return "stream", f"train.data auto -> stream: {gb}, more than the {DEVICE_SHARE:.0%} share"


def load_splits(
    mode: str, processed_dir: Path, device: torch.device, world_size: int
) -> tuple[dict[str, TrainingSplit], str]:
    """The train and val splits, resident or streamed as `mode` resolves; returns ({name: split}, choice)."""
    paths = {name: processed_dir / f"{name}.h5" for name in ("train", "val")}
    need = resident_bytes(list(paths.values()))
    choice, why = choose(mode, need, free_bytes(device) if mode == "auto" else 0)
    log.info("%s", why)
    splits: dict[str, TrainingSplit] = {}
    if choice == "device":
        splits = {name: load_split_to_device(path, device) for name, path in paths.items()}
        return splits, choice
    streams = {name: open_stream_split(path, device, world_size) for name, path in paths.items()}
    log.info("streaming from %s with %d loader worker(s) per rank", processed_dir, streams["train"].workers)
    splits = dict(streams)
    return splits, choice
