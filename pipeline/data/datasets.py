"""The processed split files (`data/processed/{train,val,test}.h5`): one writer, one reader.

Layout (see docs/ARCHITECTURE.md): `rgb` (N,H,W,3) uint8, `depth` and `raw_depth`
(N,H,W) uint16 millimetres (attribute `depth_scale` = 1000 per metre; raw 0 where
missing), `index` (N,) int32 1-based NYU index, `scene`/`scene_type` (N,) UTF-8
strings. One image per chunk, so reading image i touches only image i. Readers always
return depth as float32 metres (files written before the uint16 layout, float32
metres, read unchanged).

Why uint16 millimetres: it is the Kinect's own output format (BTS's sync PNGs, the
NYU toolbox's raw depth), so nothing a sensor measured is lost (rounding moves a depth
by at most 0.5 mm, i.e. < 5e-4 relative at 1 m), and it halves float32's size. The
depth maps are then stored byte-shuffled and deflated (gzip level 1, readable by any
HDF5 tool): smooth depth compresses ~5x more (measured in the README), at ~1 ms of
decompression per 240x320 map. RGB is stored as is: camera images barely deflate.
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
DEPTH_SCALE = 1000  # stored uint16 value per metre: millimetres
_DEPTH_MAX = np.iinfo(np.uint16).max / DEPTH_SCALE  # 65.535 m
_DEPTH_STORAGE = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def encode_depth(depth: np.ndarray, what: str) -> np.ndarray:
    """Metres (float) -> uint16 millimetres, rounded; 0 stays 0 (no measurement).

    Raises:
        PipelineError: a depth that is negative, not finite or beyond 65.535 m, naming `what`.
    """
    bad = ~np.isfinite(depth) | (depth < 0) | (depth > _DEPTH_MAX)
    if bad.any():
        v = depth[bad].flat[0]
        raise PipelineError(
            f"{what}: depth {v} m cannot be stored (finite, 0..{_DEPTH_MAX} m); check the source's depth scale"
        )
    return np.rint(depth * DEPTH_SCALE).astype(np.uint16)


def decode_depth(stored: np.ndarray, scale: float | None) -> np.ndarray:
    """Stored depth -> float32 metres: uint16 / `scale`, or float32 as is (the older layout)."""
    if scale is None:
        return stored.astype(np.float32, copy=False)
    return stored.astype(np.float32) / np.float32(scale)


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

    def __init__(
        self, path: str | Path, n: int, height: int, width: int, split: str, source: str, raw_is_depth: bool = False
    ):
        """Creates the file's datasets for `n` images of `height` x `width`.

        Args:
            path: the (temporary) output file.
            n: images in the split.
            height: image height.
            width: image width.
            split: train | val | test, stored as an attribute.
            source: the data source, stored as an attribute.
            raw_is_depth: the source has no separately filled depth (a folder of RGB-D
                pairs): `raw_depth` is then an HDF5 hard link to `depth`, stored once,
                and `write` takes `raw_depth=None`.
        """
        self._f = h5py.File(path, "w")
        self._f.attrs.update({"split": split, "height": height, "width": width, "source": source})
        # One image per chunk; an empty split (val_fraction 0) can't have chunks larger than itself.
        img = (1, height, width)
        self._f.create_dataset("rgb", (n, height, width, 3), np.uint8, chunks=(*img, 3) if n else None)
        for name in ("depth",) if raw_is_depth else ("depth", "raw_depth"):
            storage = {"chunks": img, **_DEPTH_STORAGE} if n else {}
            self._f.create_dataset(name, (n, height, width), np.uint16, **storage)
            self._f[name].attrs["depth_scale"] = DEPTH_SCALE
        if raw_is_depth:
            self._f["raw_depth"] = self._f["depth"]  # a hard link: one dataset, two names
        self._split, self._raw_is_depth = split, raw_is_depth
        self._f.create_dataset("index", (n,), np.int32)
        self._f.create_dataset("scene", (n,), _STR)
        self._f.create_dataset("scene_type", (n,), _STR)

    def write(self, i: int, rgb: np.ndarray, depth: np.ndarray, raw_depth: np.ndarray | None,
              index: int, scene: str, scene_type: str) -> None:  # fmt: skip
        """Writes row i: rgb (H,W,3) uint8, depth/raw_depth (H,W) metres (raw None when `raw_is_depth`)."""
        self._f["rgb"][i] = rgb
        what = f"{self._split} frame {index} (scene {scene})"
        self._f["depth"][i] = encode_depth(depth, f"{what} depth")
        if not self._raw_is_depth:
            assert raw_depth is not None, "raw_depth is needed unless the writer was made with raw_is_depth"
            self._f["raw_depth"][i] = encode_depth(raw_depth, f"{what} raw_depth")
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


def _depth(f: h5py.File, name: str, sel: slice | np.ndarray) -> np.ndarray:
    ds = f[name]
    return decode_depth(ds[sel], ds.attrs.get("depth_scale"))


def _rows(f: h5py.File, sl: slice | np.ndarray) -> SplitArrays:
    return SplitArrays(
        rgb=f["rgb"][sl],
        depth=_depth(f, "depth", sl),
        raw_depth=_depth(f, "raw_depth", sl),
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


class SplitReader:
    """Random access to rows of a split file, for streaming batches (one open handle).

    Open it in the process that reads (a DataLoader worker opens its own): an h5py
    handle must not cross a fork.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = _open(path)

    def __len__(self) -> int:
        return len(self._f["index"])

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the images."""
        h, w = self._f["rgb"].shape[1:3]
        return h, w

    def rgb_depth(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rgb (B, H, W, 3) uint8 and filled depth (B, H, W) float32 metres of `rows`, in that order.

        h5py reads a point selection only in increasing order: rows are read sorted and
        put back in the order asked for.
        """
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        if len(sorted_rows) > 1 and (np.diff(sorted_rows) == 0).any():
            raise ValueError(f"{self.path}: rows {rows.tolist()} repeat an index")
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        rgb = self._f["rgb"][sorted_rows][back]
        return rgb, _depth(self._f, "depth", sorted_rows)[back]

    def close(self) -> None:
        """Closes the file."""
        self._f.close()


def read_summary(processed_dir: str | Path) -> dict:
    """Reads `summary.json` written by the preprocess stage."""
    path = Path(processed_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run `dvc repro preprocess` first") from None
    except json.JSONDecodeError as e:
        raise PipelineError(f"{path}: not valid JSON ({e}); re-run `dvc repro preprocess`") from None
