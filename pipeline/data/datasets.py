"""The processed split files (`data/processed/{train,val,test}.h5`): one writer, one reader.

Layout (see docs/ARCHITECTURE.md): `rgb` (N,H,W,3) uint8, `depth` and `raw_depth`
(N,H,W) float32 metres (raw 0 where missing), `index` (N,) int32 1-based NYU index,
`scene`/`scene_type` (N,) UTF-8 strings. One image per chunk, so reading image i
touches only image i.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from pipeline.errors import PipelineError

_DATASETS = ("rgb", "depth", "raw_depth", "index", "scene", "scene_type")
_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class SplitArrays:
    """A batch of processed images (numpy), rows in split order."""

    rgb: np.ndarray  # (N, H, W, 3) uint8
    depth: np.ndarray  # (N, H, W) float32 metres, filled
    raw_depth: np.ndarray  # (N, H, W) float32 metres, 0 where missing
    index: np.ndarray  # (N,) int32, 1-based NYU index
    scene: np.ndarray  # (N,) str
    scene_type: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.index)


class SplitWriter:
    """Writes a split file image by image, so memory never holds more than one image.

    Use as a context manager on a temporary path (see `pipeline.io.atomic_path`).
    """

    def __init__(self, path: str | Path, n: int, height: int, width: int, split: str, source: str):
        self._f = h5py.File(path, "w")
        self._f.attrs.update({"split": split, "height": height, "width": width, "source": source})
        # One image per chunk; an empty split (val_fraction 0) can't have chunks larger than itself.
        img = (1, height, width)
        self._f.create_dataset("rgb", (n, height, width, 3), np.uint8, chunks=(*img, 3) if n else None)
        self._f.create_dataset("depth", (n, height, width), np.float32, chunks=img if n else None)
        self._f.create_dataset("raw_depth", (n, height, width), np.float32, chunks=img if n else None)
        self._f.create_dataset("index", (n,), np.int32)
        self._f.create_dataset("scene", (n,), _STR)
        self._f.create_dataset("scene_type", (n,), _STR)

    def write(self, i: int, rgb: np.ndarray, depth: np.ndarray, raw_depth: np.ndarray,
              index: int, scene: str, scene_type: str) -> None:  # fmt: skip
        """Writes row i: rgb (H,W,3) uint8, depth/raw_depth (H,W) metres."""
        self._f["rgb"][i] = rgb
        self._f["depth"][i] = depth
        self._f["raw_depth"][i] = raw_depth
        self._f["index"][i] = index
        self._f["scene"][i] = scene
        self._f["scene_type"][i] = scene_type

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._f.close()


def _open(path: str | Path) -> h5py.File:
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run `dvc repro preprocess` first") from None
    except OSError as e:
        raise PipelineError(f"{path}: not a readable HDF5 file ({e}); re-run `dvc repro preprocess`") from None
    missing = [k for k in _DATASETS if k not in f]
    if missing:
        f.close()
        raise PipelineError(f"{path}: missing dataset(s) {missing}; re-run `dvc repro preprocess`")
    return f


def _rows(f: h5py.File, sl: slice) -> SplitArrays:
    return SplitArrays(
        rgb=f["rgb"][sl],
        depth=f["depth"][sl],
        raw_depth=f["raw_depth"][sl],
        index=f["index"][sl],
        scene=f["scene"].asstr()[sl],
        scene_type=f["scene_type"].asstr()[sl],
    )


def read_split(path: str | Path) -> SplitArrays:
    """Reads a whole split into memory (train/val: 795 x 240x320 images is ~0.7 GB in all)."""
    with _open(path) as f:
        return _rows(f, slice(None))


def split_length(path: str | Path) -> int:
    """Number of images in a split file."""
    with _open(path) as f:
        return len(f["index"])


def iter_split(path: str | Path, batch_size: int) -> Iterator[SplitArrays]:
    """Yields consecutive batches of a split, reading only one batch at a time (test set)."""
    with _open(path) as f:
        n = len(f["index"])
        for start in range(0, n, batch_size):
            yield _rows(f, slice(start, min(start + batch_size, n)))


def read_summary(processed_dir: str | Path) -> dict:
    """Reads `summary.json` written by the preprocess stage."""
    path = Path(processed_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run `dvc repro preprocess` first") from None
    except json.JSONDecodeError as e:
        raise PipelineError(f"{path}: not valid JSON ({e}); re-run `dvc repro preprocess`") from None
