"""Training data streamed from the processed HDF5 file, for splits that do not fit on the device.

`train.data: stream` (or `auto` when the split is too large): each epoch a PyTorch
`DataLoader` reads this rank's batches, in the order `epoch_batches` drew them, in
persistent worker processes (prefetching while the step runs), into pinned memory; the main
process copies them to the device and converts them exactly as the device-resident
path does (`to_model_layout`, `as_unit_float`). Augmentation then runs on the device
as usual, from the same generator in the same order, so a streamed run and a
device-resident run with the same params and seed end with bit-identical weights (on
the CPU; tested). Under DDP each rank's loader reads only that rank's shard.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.data.datasets import SplitReader
from pipeline.training.device_data import as_unit_float, to_model_layout

log = logging.getLogger(__name__)

# Batches each worker keeps ready: enough to hide a slow read behind a few steps,
# few enough that pinned memory stays small (16 x 240x320 rgb+depth is ~9 MB a batch).
PREFETCH_BATCHES = 4
MAX_WORKERS = 8


def stream_workers(world_size: int, cpu_count: int | None = None) -> int:
    """Loader processes per rank: the cores not needed by the main processes, 1 to MAX_WORKERS.

    On a 2-core machine that is one worker: reading and decompressing a batch (~20 ms
    for 16 images at 240x320) is small next to a CPU step, and more workers would
    only take cores from the step.
    """
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(MAX_WORKERS, cores // world_size - 1))


class _Rows(Dataset):
    """Batches of a split file by row list: `__getitems__(rows)` -> (rgb (B, H, W, 3) uint8, depth (B, H, W) metres)."""

    def __init__(self, path: Path):
        self.path = path
        self._reader: SplitReader | None = None  # opened in the process that reads

    def __getitems__(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reader is None:
            self._reader = SplitReader(self.path)
        rgb, depth = self._reader.rgb_depth(np.asarray(rows))
        return torch.from_numpy(rgb), torch.from_numpy(depth)


class _EpochSampler(Sampler[list[int]]):
    """Yields the current epoch's batches of row indices, set by `StreamSplit.batches`."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def _as_batch(batch: Any) -> Any:
    return batch  # `_Rows` returns whole batches: nothing to collate


@dataclass
class StreamSplit:
    """A split read from its file batch by batch; `batches` has `DeviceSplit`'s contract."""

    path: Path
    n: int
    shape: tuple[int, int]
    device: torch.device
    workers: int
    _sampler: _EpochSampler = field(default_factory=_EpochSampler, repr=False)
    _loader: DataLoader | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.n

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return self.shape

    def _make_loader(self) -> DataLoader:
        return DataLoader(
            _Rows(self.path),
            batch_sampler=self._sampler,  # the epoch's batches, in the order they were drawn
            collate_fn=_as_batch,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=PREFETCH_BATCHES if self.workers else None,
            # Started once and kept: a worker forked every epoch would make the training
            # process copy every page it writes while the worker lives (copy-on-write),
            # measured at ~20 % of a CPU step.
            persistent_workers=self.workers > 0,
            # Every loader draws its workers' base seed from a generator: its own, not
            # torch's global one, whose next draws are this epoch's dropout masks.
            generator=torch.Generator().manual_seed(0),
        )

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Reads each batch of rows in a loader worker, then moves and converts it on the device."""
        self._sampler.rows = [idx.tolist() for idx in index_batches]  # one host sync per epoch, not per step
        if not self._sampler.rows:
            return
        if self._loader is None:
            self._loader = self._make_loader()
        pin = self.device.type == "cuda"
        for rgb, depth in self._loader:  # (B, H, W, 3) uint8, (B, H, W) metres, pinned on the host
            rgb, depth = rgb.to(self.device, non_blocking=pin), depth.to(self.device, non_blocking=pin)
            rgb, depth = to_model_layout(rgb, depth)  # (B, 3, H, W) uint8, (B, 1, H, W) metres
            yield as_unit_float(rgb), depth


def open_stream_split(path: str | Path, device: torch.device, world_size: int) -> StreamSplit:
    """A `StreamSplit` of a processed split file; reads only its shape now."""
    reader = SplitReader(path)
    try:
        n, hw = len(reader), reader.hw
    finally:
        reader.close()
    return StreamSplit(Path(path), n, hw, device, stream_workers(world_size))
