"""`data.source: synthetic`: NYUDv2-layout raw files of procedural indoor scenes, offline.

Frames are grouped into scenes (one room, 1-5 camera poses, as NYU's ~3 per scene)
and the test split takes whole scenes, as NYU's does. Every scene and every frame
draws from its own numpy Generator seeded by (seed, id), so frame i is the same
whatever order, batch or process renders it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.config import SyntheticParams
from pipeline.data.matlab import HEIGHT, WIDTH, Frame, write_labeled_mat, write_splits_mat
from pipeline.synthetic.raycast import render_frame
from pipeline.synthetic.scenes import sample_camera, sample_scene
from pipeline.synthetic.spec import SceneSpec

MAX_FRAMES_PER_SCENE = 5  # NYUDv2: 1449 frames of 464 scenes, ~3 each; 1..5 averages 3
_SCENE, _CAMERA, _PLAN, _SPLIT = 0, 1, 2, 3  # stream ids: each kind of draw has its own generator


@dataclass(frozen=True)
class SceneSlot:
    """Frames first .. first + count - 1 (0-based) show scene `scene_id`."""

    scene_id: int
    first: int
    count: int


def _rng(seed: int, stream: int, key: int = 0) -> np.random.Generator:
    # SeedSequence wants non-negative entropy; the modulo keeps any integer seed valid and distinct.
    return np.random.default_rng([seed % 2**63, stream, key])


def plan_scenes(n_images: int, seed: int) -> list[SceneSlot]:
    """How `n_images` frames group into scenes.

    Small sets get fewer frames per scene, so that even 10 images make enough scenes
    for a scene-disjoint train/val/test split.
    """
    max_count = min(MAX_FRAMES_PER_SCENE, max(1, n_images // 8))
    rng = _rng(seed, _PLAN)
    slots: list[SceneSlot] = []
    first = 0
    while first < n_images:
        count = min(int(rng.integers(1, max_count + 1)), n_images - first)
        slots.append(SceneSlot(len(slots), first, count))
        first += count
    return slots


def scene_of(seed: int, slot: SceneSlot) -> SceneSpec:
    """The room of a scene slot (a pure function of seed and scene id)."""
    return sample_scene(_rng(seed, _SCENE, slot.scene_id), slot.scene_id)


def render_index(seed: int, slot: SceneSlot, index: int, size: tuple[int, int] = (HEIGHT, WIDTH)) -> Frame:
    """Frame `index` (0-based), which belongs to `slot`, at `size` (h, w)."""
    scene = scene_of(seed, slot)
    camera = sample_camera(_rng(seed, _CAMERA, index), scene)
    rgb, depth, raw = render_frame(scene, camera, size)
    return Frame(rgb, depth, raw, scene.name, scene.scene_type)


def _render_job(job: tuple[int, SceneSlot, int, tuple[int, int]]) -> Frame:
    return render_index(*job)


def iter_frames(params: SyntheticParams, workers: int = 1) -> Iterator[Frame]:
    """All frames in index order, rendered lazily (in `workers` processes if > 1)."""
    size = (params.height, params.width)
    jobs = [(params.seed, slot, slot.first + k, size) for slot in plan_scenes(params.n_images, params.seed)
            for k in range(slot.count)]  # fmt: skip
    if workers <= 1:
        yield from map(_render_job, jobs)
        return
    # spawn, not fork: safe whatever threads the parent holds; each worker re-imports this module (~1 s).
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[Future[Frame]] = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(_render_job, job))
            if len(pending) >= 2 * workers:  # a bounded queue: memory holds a few frames, not all
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, don't render the rest


def split_scenes(slots: list[SceneSlot], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scene-disjoint (train, test) 1-based sorted indices, about `test_fraction` of frames in test.

    Whole scenes, in a seeded random order, go to test while that brings the test
    count closer to the target; test gets at least one scene and train keeps two
    where there are three or more (preprocess carves validation scenes out of train).
    """
    n = sum(s.count for s in slots)
    target = test_fraction * n
    keep_train = 2 if len(slots) >= 3 else 1
    test: list[SceneSlot] = []
    n_test = 0
    for k in _rng(seed, _SPLIT).permutation(len(slots)):
        slot = slots[k]
        closer = abs(n_test + slot.count - target) < abs(n_test - target)
        if (not test or closer) and len(slots) - len(test) > keep_train:
            test.append(slot)
            n_test += slot.count
    in_test = np.zeros(n, bool)
    for slot in test:
        in_test[slot.first : slot.first + slot.count] = True
    index = np.arange(1, n + 1)
    return index[~in_test], index[in_test]


def write_synthetic_nyu(
    labeled_path: str | Path, splits_path: str | Path, params: SyntheticParams, workers: int | None = None
) -> None:
    """Writes `nyu_depth_v2_labeled.mat` and `splits.mat` of `params.n_images` rendered frames.

    Args:
        labeled_path: output labeled file (MATLAB v7.3, NYUDv2 layout at the frame size
            `params.height` x `params.width`), written atomically.
        splits_path: output splits file (MATLAB v5, 1-based `trainNdxs`/`testNdxs`).
        params: number of images, seed, test share and frame size.
        workers: render processes; default up to 2 (the CPUs a demo can count on), 1 for small sets.
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if params.n_images >= 32 else 1
    slots = plan_scenes(params.n_images, params.seed)
    frames = tqdm(iter_frames(params, workers), total=params.n_images, desc="render", unit="frame")
    # Deflate level 1: as small as the default level 4 on these frames (~2.5 MB each), at 60% of its CPU.
    write_labeled_mat(labeled_path, frames, params.n_images, gzip=1, size=(params.height, params.width))
    train, test = split_scenes(slots, params.test_fraction, params.seed)
    write_splits_mat(splits_path, train, test)
