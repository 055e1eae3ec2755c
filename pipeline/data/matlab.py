"""Writers for NYUDv2's two raw files, in the exact layout the real downloads have.

`nyu_depth_v2_labeled.mat` is MATLAB v7.3, i.e. HDF5 behind a 512-byte userblock that
holds MATLAB's 128-byte header. MATLAB is column-major and HDF5 row-major, so every
array appears to h5py with its dimensions reversed: MATLAB's `images` (480,640,3,N) is
h5py's (N,3,640,480), and frame i's rgb (480,640,3) is stored as `rgb.transpose(2,1,0)`.
Cell arrays of strings are (1,N) datasets of object references into the `#refs#` group,
each pointing at a uint16 (len,1) char array.

`splits.mat` is MATLAB v5 (scipy.io) with 1-based `trainNdxs`/`testNdxs` (N,1) uint16.

The synthetic data generator and the tests use these, so the reader (`pipeline.data.nyu`)
is exercised against the same layout as the real file.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from pipeline.io import atomic_path

HEIGHT, WIDTH = 480, 640  # every NYUDv2 frame (Kinect v1 RGB resolution)
USERBLOCK_BYTES = 512  # MATLAB reserves 512 bytes; its header uses the first 128
_HEADER_TEXT_BYTES = 116
REFS_GROUP = "#refs#"


@dataclass(frozen=True)
class Frame:
    """One NYUDv2 frame as numpy sees it (row-major, top row first, not mirrored)."""

    rgb: np.ndarray  # (480, 640, 3) uint8
    depth: np.ndarray  # (480, 640) float32 metres, in-painted
    raw_depth: np.ndarray  # (480, 640) float32 metres, 0 = hole
    scene: str  # e.g. "kitchen_0004"
    scene_type: str  # e.g. "kitchen"


def matlab_header() -> bytes:
    """The 128-byte header MATLAB writes at the start of a v7.3 MAT-file's userblock."""
    created = time.strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 ."
    # 116 bytes of text, 8 bytes of subsystem offset (MATLAB writes spaces or zeros),
    # version 0x0200 as a little-endian uint16, then "IM" (little-endian indicator).
    return text.encode("ascii").ljust(_HEADER_TEXT_BYTES, b" ") + b" " * 8 + (0x0200).to_bytes(2, "little") + b"IM"


def _numeric(f: h5py.File, name: str, shape: tuple[int, ...], dtype: type, cls: str, gzip: int | None) -> h5py.Dataset:
    # One frame per chunk: writing (and reading) frame i touches only frame i.
    ds = f.create_dataset(name, shape, dtype, chunks=(1, *shape[1:]), compression="gzip" if gzip else None,
                          compression_opts=gzip or None)  # fmt: skip
    ds.attrs["MATLAB_class"] = np.bytes_(cls)
    return ds


def _char(refs: h5py.Group, name: str, text: str) -> h5py.Reference:
    """A MATLAB 1xL char array: uint16 code units, which h5py sees as (L,1)."""
    codes = np.frombuffer(text.encode("utf-16-le"), dtype="<u2")
    if codes.size == 0:  # MATLAB stores '' as its dimensions with a MATLAB_empty flag
        ds = refs.create_dataset(name, data=np.array([0, 0], np.uint64))
        ds.attrs["MATLAB_empty"] = np.uint8(1)
    else:
        ds = refs.create_dataset(name, data=codes.reshape(-1, 1))
    ds.attrs["MATLAB_class"] = np.bytes_("char")
    ds.attrs["MATLAB_int_decode"] = np.int32(2)  # 2 = UTF-16 code units
    return ds.ref


def _cell(f: h5py.File, name: str, refs: list[h5py.Reference]) -> None:
    """A MATLAB Nx1 cell array, which h5py sees as (1,N) object references."""
    ds = f.create_dataset(name, (1, len(refs)), dtype=h5py.ref_dtype)
    for i, ref in enumerate(refs):
        ds[0, i] = ref
    ds.attrs["MATLAB_class"] = np.bytes_("cell")


def _check_frame(i: int, fr: Frame, size: tuple[int, int]) -> None:
    for field, shape in (("rgb", (*size, 3)), ("depth", size), ("raw_depth", size)):
        arr = getattr(fr, field)
        if arr.shape != shape:
            raise ValueError(f"frame {i}: {field} has shape {arr.shape}; this file's frames are {shape}")
    if fr.rgb.dtype != np.uint8:
        raise ValueError(f"frame {i}: rgb is {fr.rgb.dtype}; expected uint8")


def write_labeled_mat(
    path: str | Path, frames: Iterable[Frame], n: int, *, gzip: int | None = 4, size: tuple[int, int] = (HEIGHT, WIDTH)
) -> None:
    """Writes `nyu_depth_v2_labeled.mat` (MATLAB v7.3) frame by frame, atomically.

    Only the keys the pipeline reads are written: `images`, `depths`, `rawDepths`,
    `scenes`, `sceneTypes`. Memory holds one frame at a time.

    Args:
        path: output file; replaced only once the whole file is written.
        frames: exactly `n` frames, in NYU index order (frame 0 is MATLAB's index 1).
        n: number of frames (the datasets are sized up front).
        gzip: deflate level (MATLAB compresses v7.3 files too), or None for none.
        size: every frame's (h, w): NYUDv2's 480x640, or the synthetic source's own size.

    Raises:
        ValueError: if a frame has the wrong shape/dtype or the count is not `n`.
    """
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=USERBLOCK_BYTES, libver="earliest") as f:
            h, w = size
            images = _numeric(f, "images", (n, 3, w, h), np.uint8, "uint8", gzip)
            depths = _numeric(f, "depths", (n, w, h), np.float32, "single", gzip)
            raw = _numeric(f, "rawDepths", (n, w, h), np.float32, "single", gzip)
            refs = f.create_group(REFS_GROUP)
            scenes, types = [], []
            count = 0
            for i, fr in enumerate(frames):
                if i >= n:
                    raise ValueError(f"more than n={n} frames given")
                _check_frame(i, fr, size)
                images[i] = fr.rgb.transpose(2, 1, 0)  # (H,W,3) -> MATLAB column-major (3,W,H)
                depths[i] = np.asarray(fr.depth, np.float32).T  # (H,W) -> (W,H)
                raw[i] = np.asarray(fr.raw_depth, np.float32).T
                scenes.append(_char(refs, f"s{i}", fr.scene))
                types.append(_char(refs, f"t{i}", fr.scene_type))
                count += 1
            if count != n:
                raise ValueError(f"got {count} frames; expected n={n}")
            _cell(f, "scenes", scenes)
            _cell(f, "sceneTypes", types)
        # HDF5 leaves the userblock alone once the file is closed; fill it with the header.
        with open(tmp, "r+b") as fh:
            fh.write(matlab_header())


def write_splits_mat(path: str | Path, train_idx: np.ndarray, test_idx: np.ndarray) -> None:
    """Writes `splits.mat` (MATLAB v5): `trainNdxs`/`testNdxs` as 1-based uint16 (N,1).

    Args:
        path: output file, written atomically.
        train_idx: 1-based NYU indices of the training images.
        test_idx: 1-based NYU indices of the test images.
    """
    mdict = {
        "trainNdxs": np.asarray(train_idx, np.uint16).reshape(-1, 1),
        "testNdxs": np.asarray(test_idx, np.uint16).reshape(-1, 1),
    }
    with atomic_path(path, suffix=".mat") as tmp:
        scipy.io.savemat(tmp, mdict, format="5", do_compression=False)
