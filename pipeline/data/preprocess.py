"""The preprocess stage: `run(params, root)`, raw NYUDv2 files -> `train/val/test.h5` + `summary.json`.

Streams image by image (one 480x640 frame in memory at a time), so the 2.97 GB labeled
file never has to fit in RAM. All outputs go to a temporary folder beside `out_dir`,
which replaces `out_dir` only once everything is written: a failed or interrupted run
leaves no partial output, and a previous good `out_dir` survives until the new one is
complete.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipeline.config import Params, PreprocessParams
from pipeline.data.datasets import SplitWriter
from pipeline.data.matlab import HEIGHT, WIDTH
from pipeline.data.nyu import NyuLabeled, read_splits
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, write_json_atomic
from pipeline.resample import resize_depth, resize_rgb

log = logging.getLogger(__name__)


def room_of(scene: str) -> str:
    """The room a scene was recorded in: the scene name without its trailing letters.

    NYU records some rooms more than once (`basement_0001a`, `basement_0001b`, ...);
    those recordings see the same walls and furniture, so they are one room.
    """
    return re.sub(r"(?<=\d)[a-z]+$", "", scene)


def split_train_val(
    train_idx: np.ndarray, scenes: list[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Carves a validation set out of the training indices, by whole rooms.

    Frames of one scene are near-duplicates (consecutive Kinect frames of one room), and
    sibling recordings of one room (`_0001a`, `_0001b`) show the same room again; a
    per-image or per-recording split would leak val rooms into training, and model
    selection would then reward memorising rooms.

    Args:
        train_idx: 1-based NYU indices of the official training split, in file order.
        scenes: scene name of every frame (0-based, all frames of the labeled file).
        val_fraction: share of the training *rooms* to hold out (at least one if > 0,
            never all of them).
        seed: makes the choice of rooms reproducible.

    Returns:
        (train, val) 1-based indices, each in the order they had in `train_idx`.
    """
    rooms = [room_of(scenes[i - 1]) for i in train_idx]
    train_rooms = sorted(set(rooms))  # sorted: independent of file order
    n_val = 0
    if val_fraction > 0 and len(train_rooms) > 1:
        n_val = min(max(1, round(val_fraction * len(train_rooms))), len(train_rooms) - 1)
    rng = np.random.default_rng(seed)
    val_rooms = {train_rooms[k] for k in rng.permutation(len(train_rooms))[:n_val]}
    is_val = np.array([room in val_rooms for room in rooms], dtype=bool)
    return train_idx[~is_val], train_idx[is_val]


class RgbStats:
    """Streaming per-channel mean and std of RGB on the 0..1 scale (float64 sums)."""

    def __init__(self) -> None:
        self._n = 0
        self._sum = np.zeros(3)
        self._sq = np.zeros(3)

    def update(self, rgb: np.ndarray) -> None:
        """Adds an (H,W,3) uint8 image."""
        x = rgb.reshape(-1, 3).astype(np.float64) / 255.0  # (H*W, 3)
        self._n += x.shape[0]
        self._sum += x.sum(0)
        self._sq += (x * x).sum(0)

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel (mean, std) as lists of 3 floats."""
        mean = self._sum / self._n
        var = np.maximum(self._sq / self._n - mean**2, 0.0)  # clamp tiny negative rounding
        return [float(v) for v in mean], [float(v) for v in np.sqrt(var)]


def _write_split(
    nyu: NyuLabeled, idx: np.ndarray, path: Path, size: tuple[int, int], split: str, source: str,
    scenes: list[str], types: list[str], stats: RgbStats | None,
) -> tuple[float, float]:  # fmt: skip
    """Writes one split file, rows in `idx` order; returns the (min, max) filled depth written."""
    height, width = size
    lo, hi = np.inf, -np.inf
    with SplitWriter(path, len(idx), height, width, split, source) as out:
        for row, nyu_index in enumerate(tqdm(idx, desc=f"preprocess {split}", unit="img")):
            i = int(nyu_index) - 1  # splits.mat is 1-based, the reader 0-based
            fr = nyu.frame(i, scenes[i], types[i])
            rgb = resize_rgb(fr.rgb, height, width)  # (h, w, 3) uint8
            depth = resize_depth(fr.depth, height, width)  # (h, w) metres
            raw = resize_depth(fr.raw_depth, height, width)  # (h, w) metres, 0 = hole
            out.write(row, rgb, depth, raw, int(nyu_index), fr.scene, fr.scene_type)
            if stats is not None:
                stats.update(rgb)
            lo, hi = min(lo, float(depth.min())), max(hi, float(depth.max()))
    return lo, hi


def preprocess(
    labeled: str | Path, splits: str | Path, out_dir: str | Path, params: PreprocessParams, source: str
) -> dict:
    """Builds `train.h5`, `val.h5` (at params' size), `test.h5` (480x640) and `summary.json`.

    Args:
        labeled: `nyu_depth_v2_labeled.mat` (real or synthetic, same layout).
        splits: `splits.mat` with 1-based `trainNdxs`/`testNdxs`.
        out_dir: `data/processed`; replaced as a whole, only on success.
        params: output size, val share (of training scenes) and seed.
        source: "nyudv2" or "synthetic", recorded in every output.

    Returns:
        The summary written to `summary.json` (format in docs/ARCHITECTURE.md).

    Raises:
        PipelineError: on unreadable/invalid inputs or an empty val split.
    """
    out_dir = Path(out_dir)
    with NyuLabeled(labeled) as nyu:
        train_all, test = read_splits(splits, len(nyu))
        scenes, types = nyu.scenes(), nyu.scene_types()
        train, val = split_train_val(train_all, scenes, params.val_fraction, params.seed)
        if len(val) == 0:
            n_rooms = len({room_of(scenes[i - 1]) for i in train_all})
            raise PipelineError(
                f"preprocess.val_fraction={params.val_fraction} with {n_rooms} training room(s) in {splits} "
                "leaves val empty; set preprocess.val_fraction > 0"
            )
        plan = {"train": train, "val": val, "test": test}
        sizes = {"train": (params.height, params.width), "val": (params.height, params.width), "test": (HEIGHT, WIDTH)}
        stats = RgbStats()
        lo, hi = np.inf, -np.inf
        with atomic_dir(out_dir) as tmp:
            for split, idx in plan.items():
                s_lo, s_hi = _write_split(nyu, idx, tmp / f"{split}.h5", sizes[split], split, source, scenes, types,
                                          stats if split == "train" else None)  # fmt: skip
                lo, hi = min(lo, s_lo), max(hi, s_hi)
            mean, std = stats.mean_std()
            summary: dict[str, Any] = {
                "source": source,
                "height": params.height,
                "width": params.width,
                "counts": {split: len(idx) for split, idx in plan.items()},
                "scene_types": {s: dict(sorted(Counter(types[i - 1] for i in idx).items())) for s, idx in plan.items()},
                "depth_min": lo,  # over the filled depth of every processed image
                "depth_max": hi,
                "rgb_mean": mean,  # train only: the model's input normalisation
                "rgb_std": std,
            }
            write_json_atomic(tmp / "summary.json", summary)
    log.info("preprocess: wrote %s (%s)", out_dir, ", ".join(f"{k} {v}" for k, v in summary["counts"].items()))
    return summary


def run(params: Params, root: Path) -> dict:
    """Preprocesses `paths.labeled` + `paths.splits` into `paths.processed_dir`; returns the summary."""
    paths = params.paths.resolve(root)
    summary = preprocess(paths.labeled, paths.splits, paths.processed_dir, params.preprocess, params.data.source)
    log.info(
        "rgb mean %s std %s; depth %.2f..%.2f m",
        [round(v, 4) for v in summary["rgb_mean"]],
        [round(v, 4) for v in summary["rgb_std"]],
        summary["depth_min"],
        summary["depth_max"],
    )
    return summary
