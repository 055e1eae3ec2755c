"""The preprocess stage: `run(params, root)`, raw NYUDv2 files -> `train/val/test.h5` + `summary.json`.

`data.source: nyudv2`/`synthetic` read the labeled .mat; `folder` reads RGB-D pairs named
by list files (`pipeline.data.pairs`, `pipeline.data.folder`), with its test split from
its own list or from the labeled .mat (`data.folder.test_from`). Streams image by image
(one 480x640 frame in memory at a time, a few in flight for the folder source), so
neither the 2.97 GB labeled file nor a 50K-frame folder ever has to fit in RAM. All
outputs go to a temporary folder beside `out_dir`, which replaces `out_dir` only once
everything is written: a failed or interrupted run leaves no partial output, and a
previous good `out_dir` survives until the new one is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipeline.config import FolderParams, Params, PreprocessParams
from pipeline.data.datasets import SplitWriter
from pipeline.data.folder import FolderFiles, default_workers, probe_all, write_split
from pipeline.data.nyu import NyuLabeled, read_splits
from pipeline.data.pairs import Pair, check_disjoint, read_pairs, scene_type_of
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
    """Streaming per-channel mean and std of RGB on the 0..1 scale.

    Accumulates an exact per-channel histogram of the 256 values (integers, so nothing
    is lost however many frames go in, and ~8x cheaper than float sums of every pixel).
    """

    def __init__(self) -> None:
        self._hist = np.zeros((3, 256), np.int64)

    def update(self, rgb: np.ndarray) -> None:
        """Adds an (H,W,3) uint8 image."""
        for c in range(3):
            self._hist[c] += np.bincount(rgb[..., c].ravel(), minlength=256)

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel (mean, std) as lists of 3 floats."""
        v = np.arange(256) / 255.0  # (256,) the value of each bin
        n = self._hist.sum(1)  # (3,) pixels per channel
        mean = self._hist @ v / n
        var = np.maximum(self._hist @ (v * v) / n - mean**2, 0.0)  # clamp tiny negative rounding
        return [float(m) for m in mean], [float(s) for s in np.sqrt(var)]


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


def _require_val(val: np.ndarray, rooms: set[str], val_fraction: float, where: Path) -> None:
    if len(val) == 0:
        raise PipelineError(
            f"preprocess.val_fraction={val_fraction} with {len(rooms)} training room(s) in {where} "
            "leaves val empty; set preprocess.val_fraction > 0 (and list more than one room)"
        )


class _Tally:
    """What the summary reports about the written images: colour statistics (training split) and depth range."""

    def __init__(self) -> None:
        self.stats, self.lo, self.hi = RgbStats(), np.inf, -np.inf

    def extend(self, lo: float, hi: float) -> None:
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def depth(self, rgb: np.ndarray, depth: np.ndarray) -> None:
        """Folder source: the range of the measured pixels (raw depth: 0 = no measurement, not a distance)."""
        valid = depth[depth > 0]
        if valid.size:
            self.extend(float(valid.min()), float(valid.max()))

    def train(self, rgb: np.ndarray, depth: np.ndarray) -> None:
        self.stats.update(rgb)
        self.depth(rgb, depth)


def _summary(source: str, params: PreprocessParams, types: dict[str, list[str]], tally: _Tally, test_source: str,
             filled: dict[str, bool]) -> dict[str, Any]:  # fmt: skip
    mean, std = tally.stats.mean_std()
    return {
        "source": source,
        "height": params.height,
        "width": params.width,
        "counts": {split: len(t) for split, t in types.items()},
        "scene_types": {split: dict(sorted(Counter(t).items())) for split, t in types.items()},
        "depth_min": tally.lo,  # over the filled depth of every processed image (folder: its measured pixels)
        "depth_max": tally.hi,
        "rgb_mean": mean,  # train only: the model's input normalisation
        "rgb_std": std,
        "test_source": test_source,  # nyudv2: the official 654 frames, comparable with published results
        "depth_filled": filled,  # per split: is `depth` in-painted (else it is the raw depth)
    }


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
        _require_val(val, {room_of(scenes[i - 1]) for i in train_all}, params.val_fraction, Path(splits))
        plan = {"train": train, "val": val, "test": test}
        sizes = {"train": (params.height, params.width), "val": (params.height, params.width), "test": nyu.frame_hw}
        if params.height > nyu.frame_hw[0] or params.width > nyu.frame_hw[1]:
            log.warning("%s: frames are %dx%d, smaller than preprocess.height x width %dx%d: train/val are upsampled "
                        "(nearest depth); render or train at one size", labeled, *nyu.frame_hw, params.height,
                        params.width)  # fmt: skip
        tally = _Tally()
        with atomic_dir(out_dir) as tmp:
            for split, idx in plan.items():
                tally.extend(*_write_split(nyu, idx, tmp / f"{split}.h5", sizes[split], split, source, scenes, types,
                                           tally.stats if split == "train" else None))  # fmt: skip
            split_types = {split: [types[i - 1] for i in idx] for split, idx in plan.items()}
            summary = _summary(source, params, split_types, tally, source, dict.fromkeys(plan, True))
            write_json_atomic(tmp / "summary.json", summary)
    log.info("preprocess: wrote %s (%s)", out_dir, ", ".join(f"{k} {v}" for k, v in summary["counts"].items()))
    return summary


def _folder_plan(
    folder: FolderParams, root: Path, params: PreprocessParams
) -> tuple[FolderFiles, FolderFiles, dict[str, list[Pair]]]:
    """Reads and checks the lists, carves val by room and probes every training pair: all before writing.

    Returns:
        (the training list's files, the test list's files, pairs by split: train, val and,
        when test_from is list, test).
    """
    files = FolderFiles(root / folder.root, root / folder.train_list, folder.depth_scale, default_workers())
    pairs = read_pairs(files.list_path, files.root)
    scenes = [p.scene for p in pairs]
    train, val = split_train_val(np.arange(1, len(pairs) + 1), scenes, params.val_fraction, params.seed)
    _require_val(val, {room_of(s) for s in scenes}, params.val_fraction, files.list_path)
    plan = {"train": [pairs[i - 1] for i in train], "val": [pairs[i - 1] for i in val]}
    test_files = dataclasses.replace(files, list_path=root / folder.test_list)
    if folder.test_from == "list":
        plan["test"] = read_pairs(test_files.list_path, files.root)
        check_disjoint(pairs, plan["test"], files.list_path, test_files.list_path)
    probe_all(files, pairs, same_size=False)
    return files, test_files, plan


def preprocess_folder(folder: FolderParams, root: Path, labeled: Path, splits: Path, out_dir: Path,
                      params: PreprocessParams) -> dict:  # fmt: skip
    """`data.source: folder`: train/val from `data.folder.train_list`, test from its list or the labeled .mat.

    Every list is read and every pair's headers checked before anything is written.

    Args:
        folder: the `data.folder` params (paths relative to `root`).
        root: the folder the params' paths are relative to.
        labeled: the labeled .mat, read when `test_from` is labeled (its official 654 test frames).
        splits: its `splits.mat`, likewise.
        out_dir: `data/processed`; replaced as a whole, only on success.
        params: training size, val share (of training rooms) and seed.

    Returns:
        The summary written to `summary.json`.

    Raises:
        PipelineError: bad lists or images (the message names the list file and line or the
            image), an unreadable labeled file, or an empty val split.
    """
    files, test_files, plan = _folder_plan(folder, root, params)
    train_hw, tally = (params.height, params.width), _Tally()
    with contextlib.ExitStack() as stack:
        nyu = None if "test" in plan else stack.enter_context(NyuLabeled(labeled))
        # The labeled test split is read and checked before anything is written, too.
        test_idx = read_splits(splits, len(nyu))[1] if nyu is not None else np.zeros(0, np.int64)
        test_hw = probe_all(test_files, plan["test"], same_size=True) if nyu is None else nyu.frame_hw
        tmp = stack.enter_context(atomic_dir(out_dir))
        write_split(files, plan["train"], tmp / "train.h5", train_hw, "train", tally.train)
        write_split(files, plan["val"], tmp / "val.h5", train_hw, "val", tally.depth)
        types = {split: [scene_type_of(p.scene) for p in ps] for split, ps in plan.items()}
        if nyu is None:
            write_split(test_files, plan["test"], tmp / "test.h5", test_hw, "test", tally.depth)
        else:
            scenes, nyu_types = nyu.scenes(), nyu.scene_types()
            tally.extend(*_write_split(nyu, test_idx, tmp / "test.h5", test_hw, "test", "nyudv2", scenes, nyu_types,
                                       None))  # fmt: skip
            types["test"] = [nyu_types[i - 1] for i in test_idx]
        test_source, filled = ("folder", False) if nyu is None else ("nyudv2", True)
        summary = _summary("folder", params, types, tally, test_source, {"train": False, "val": False, "test": filled})
        write_json_atomic(tmp / "summary.json", summary)
    log.info("preprocess: wrote %s (%s; test from %s)", out_dir,
             ", ".join(f"{k} {v}" for k, v in summary["counts"].items()), test_source)  # fmt: skip
    return summary


def run(params: Params, root: Path) -> dict:
    """Preprocesses `paths.labeled` + `paths.splits` into `paths.processed_dir`; returns the summary."""
    paths, data = params.paths.resolve(root), params.data
    if data.source == "folder":
        summary = preprocess_folder(data.folder, Path(root), paths.labeled, paths.splits, paths.processed_dir,
                                    params.preprocess)  # fmt: skip
    else:
        summary = preprocess(paths.labeled, paths.splits, paths.processed_dir, params.preprocess, data.source)
    log.info(
        "rgb mean %s std %s; depth %.2f..%.2f m",
        [round(v, 4) for v in summary["rgb_mean"]],
        [round(v, 4) for v in summary["rgb_std"]],
        summary["depth_min"],
        summary["depth_max"],
    )
    return summary
