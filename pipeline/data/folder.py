"""The images of `data.source: folder`: checked, decoded in parallel, and streamed into a split file.

Depth is `PNG value / data.folder.depth_scale` metres, and 0 stays exactly 0 (no
measurement). These files carry one depth only, so the split files' `depth` and `raw_depth`
hold the same values (`eval.gt: filled` then means the raw depth; the report says so).

Before anything is written every pair's headers are read (size and mode, no pixels), so
a wrong size or bit depth fails in seconds rather than an hour into a 24K-frame run;
decoding errors found later (a truncated file) still abort before any output is kept.
Decoding runs in a thread pool (Pillow and the numpy resize release the GIL), results
are consumed in list order through a bounded window, so memory holds a few frames
whatever the list's length.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.data.datasets import SplitWriter
from pipeline.data.pairs import Pair, scene_type_of
from pipeline.errors import PipelineError
from pipeline.resample import resize_depth, resize_rgb

SOURCE = "folder"
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # how Pillow opens 16-bit greyscale PNGs
MILLIMETRE_SCALE = 256.0  # a depth_scale this large only fits values beyond 8 bits (1000 = millimetres)
AHEAD_PER_WORKER = 4  # frames decoded ahead of the writer, per thread: enough to hide a slow file, ~10 MB each

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Decoding threads: one per usable core (at most 8: beyond that the HDF5 writer is the bottleneck)."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


@dataclass(frozen=True)
class FolderFiles:
    """Where a list's files are and how to read them."""

    root: Path  # the list's paths are relative to it
    list_path: Path  # for error messages
    depth_scale: float  # PNG value / depth_scale = metres
    workers: int  # decoding threads

    def where(self, pair: Pair) -> str:
        """`<list file> line <n>`, the start of every error about a pair."""
        return f"{self.list_path} line {pair.line}"


def _open(files: FolderFiles, pair: Pair, rel: str) -> Image.Image:
    path = files.root / rel
    try:
        return Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise PipelineError(f"{files.where(pair)}: cannot read image {path} ({e}); replace or unlist it") from None


def _check_depth_mode(files: FolderFiles, pair: Pair, depth: Image.Image) -> None:
    path = files.root / pair.depth
    if depth.mode not in SIXTEEN_BIT_MODES | {"L"}:
        raise PipelineError(
            f"{files.where(pair)}: depth {path} is a {depth.mode} image; expected a single-channel 8- or 16-bit PNG"
        )
    if depth.mode == "L" and files.depth_scale >= MILLIMETRE_SCALE:
        raise PipelineError(
            f"{files.where(pair)}: depth {path} is 8-bit, but data.folder.depth_scale {files.depth_scale:g} means "
            "16-bit values (1000 = millimetres); use the 16-bit PNGs, or the 8-bit PNGs' own scale "
            "(25.5 for DenseDepth's: value / 255 * 10 m)"
        )


def probe(files: FolderFiles, pair: Pair) -> tuple[int, int]:
    """Reads the headers of a pair only; returns its (height, width).

    Raises:
        PipelineError: an unreadable image, a depth image that is not single-channel
            8/16-bit (or 8-bit where depth_scale means millimetres), or RGB and depth of
            different sizes; the message names the list file, line and image.
    """
    with _open(files, pair, pair.rgb) as rgb, _open(files, pair, pair.depth) as depth:
        _check_depth_mode(files, pair, depth)
        if rgb.size != depth.size:
            raise PipelineError(
                f"{files.where(pair)}: RGB {files.root / pair.rgb} is {rgb.width}x{rgb.height} but depth "
                f"{files.root / pair.depth} is {depth.width}x{depth.height}; a pair must be registered pixel to pixel"
            )
        return rgb.height, rgb.width


def load(files: FolderFiles, pair: Pair, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a pair, resized to `size` (None: as it is) on the grid of `pipeline.resample`.

    Returns:
        rgb (h, w, 3) uint8 and depth (h, w) float32 metres, 0 where there is no measurement.
    """
    with _open(files, pair, pair.rgb) as rgb_im, _open(files, pair, pair.depth) as depth_im:
        _check_depth_mode(files, pair, depth_im)
        try:
            rgb = np.asarray(rgb_im if rgb_im.mode == "RGB" else rgb_im.convert("RGB"))  # (H, W, 3) uint8
            value = np.asarray(depth_im)  # (H, W) uint8 or uint16
        except (OSError, ValueError) as e:  # e.g. a truncated file: the header was fine, the data is not
            raise PipelineError(f"{files.where(pair)}: cannot decode {pair.rgb} / {pair.depth} ({e})") from None
    if rgb.shape[:2] != value.shape:
        raise PipelineError(f"{files.where(pair)}: RGB {rgb.shape[:2]} and depth {value.shape} differ in size")
    depth = value.astype(np.float32) / np.float32(files.depth_scale)  # 0 / scale is exactly 0: holes stay holes
    if size is not None:
        rgb, depth = resize_rgb(rgb, *size), resize_depth(depth, *size)
    return rgb, depth


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Generator[R, None, None]:
    """`map(fn, items)` on a thread pool, in order, with at most `AHEAD_PER_WORKER * workers` results held.

    `Executor.map` would submit every item at once and keep every finished result until
    the consumer reaches it: a 24K-frame list would then sit in memory.
    """
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        pending: collections.deque[Future[R]] = collections.deque()
        it = iter(items)
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= AHEAD_PER_WORKER * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:  # an error or an abandoned generator: don't decode the rest
                fut.cancel()


def probe_all(files: FolderFiles, pairs: list[Pair], same_size: bool) -> tuple[int, int]:
    """Probes every pair; returns the first one's (height, width).

    Args:
        files: where the list's files are.
        pairs: the pairs to probe (at least one).
        same_size: require every pair to have that size (the test split keeps the files'
            own resolution, and a split file holds one size).
    """
    with contextlib.closing(ordered_map(lambda p: probe(files, p), pairs, files.workers)) as sizes:
        first = next(sizes)
        for pair, size in zip(pairs[1:], sizes, strict=True):
            if same_size and size != first:
                raise PipelineError(
                    f"{files.where(pair)}: {files.root / pair.rgb} is {size[1]}x{size[0]}, but the list's first pair "
                    f"is {first[1]}x{first[0]}; the test split keeps the files' resolution, so all must share one"
                )
    return first


def write_split(
    files: FolderFiles,
    pairs: list[Pair],
    path: Path,
    size: tuple[int, int],
    split: str,
    observe: Callable[[np.ndarray, np.ndarray], None],
) -> None:
    """Streams `pairs` into one split file at `size` (h, w), rows in list order.

    Args:
        files: where the list's files are.
        pairs: the split's pairs, in row order.
        path: the split file to write (inside the caller's staging folder).
        size: (height, width) of every row.
        split: "train", "val" or "test" (the file's `split` attribute).
        observe: called with every written (rgb, depth), for the summary's statistics.
    """
    frames = ordered_map(lambda p: load(files, p, size), pairs, files.workers)
    bar = tqdm(frames, total=len(pairs), desc=f"preprocess {split}", unit="img")
    with contextlib.closing(frames), SplitWriter(path, len(pairs), *size, split, SOURCE, raw_is_depth=True) as out:
        for row, (pair, (rgb, depth)) in enumerate(zip(pairs, bar, strict=True)):
            # One depth only: filled and raw are the same array (see the module docstring).
            out.write(row, rgb, depth, None, pair.line, pair.scene, scene_type_of(pair.scene))
            observe(rgb, depth)
