"""Synthetic sequences: exact poses and depth through the TUM layout, hand-held motion, geometry, own rooms."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import SyntheticSequencesParams
from pipeline.pointcloud import back_project
from pipeline.sequences.layout import load_depth, read_sequence, write_sequence
from pipeline.sequences.synthetic import (
    NEAR_STRIDE,
    AutoExposure,
    plan_sequence,
    render_sequence,
    sequence_room,
)
from pipeline.synthetic.dataset import plan_scenes, scene_of
from pipeline.synthetic.raycast import KINECT_MIN, camera_to_world, render_frame, trace_depth
from pipeline.synthetic.scenes import MIN_DEPTH
from tests.conftest import repo_raw, shrunk_params

SMALL = shrunk_params().sequences.synthetic  # 2 x 8 frames at 48x64


def _written(tmp_path: Path, params: SyntheticSequencesParams, k: int = 0):
    plan = plan_sequence(params, k)
    folder = write_sequence(tmp_path / plan.name, **render_sequence(params, plan))
    return plan, read_sequence(folder)


def test_round_trip_gives_back_the_poses_and_the_depth(tmp_path: Path) -> None:
    plan, seq = _written(tmp_path, SMALL)
    missing = int(np.flatnonzero(~np.isfinite(plan.clock.depth))[0])
    assert len(seq.frames) == SMALL.frames - 1  # the dropped depth frame's RGB has no depth within 0.02 s
    for f in seq.frames:
        i = int(np.abs(plan.clock.rgb - f.rgb_time).argmin())
        assert abs(plan.clock.rgb[i] - f.rgb_time) < 1e-5
        assert i != missing
        # The nearest 100 Hz sample (as TUM's tools score), written to 6 decimals.
        nearest = plan.clock.groundtruth[np.abs(plan.clock.groundtruth - f.rgb_time).argmin()]
        truth = camera_to_world(plan.camera(nearest))
        assert np.abs(f.pose[:3, 3] - truth[:3, 3]).max() < 1e-5
        assert np.abs(f.pose[:3, :3] - truth[:3, :3]).max() < 1e-5
        camera = plan.camera(plan.clock.rgb[i], i)  # the exact time: the file's is rounded to 1 us
        _, _, raw = render_frame(plan.scene, camera, (SMALL.height, SMALL.width))
        depth = load_depth(f.depth_path)
        assert np.abs(depth - raw).max() <= 0.5 / 5000 + 1e-6  # TUM's 1/5000 m steps, rounded
        assert ((depth == 0) == (raw == 0)).all() and (depth == 0).any()  # Kinect holes kept as 0
    assert seq.intrinsics.width == SMALL.width and seq.intrinsics.height == SMALL.height


def test_clocks_are_tums_offset_depth_a_missing_frame_and_100_hz_ground_truth() -> None:
    clock = plan_sequence(SMALL, 1).clock
    offset = clock.depth - clock.rgb
    assert np.isnan(offset).sum() == 1
    assert (np.nanmin(offset) >= 0.001) and (np.nanmax(offset) <= 0.013)
    assert np.allclose(np.diff(clock.rgb), 1 / SMALL.fps)
    assert np.allclose(np.diff(clock.groundtruth), 0.01)
    assert clock.groundtruth[0] < clock.rgb[0] and clock.groundtruth[-1] > clock.rgb[-1]


def test_motion_is_hand_held_and_never_too_near() -> None:
    params = dataclasses.replace(SMALL, frames=60)  # 2 s at 30 Hz
    for k in range(2):
        plan = plan_sequence(params, k)
        t = plan.clock.groundtruth
        poses = np.stack([camera_to_world(plan.camera(x)) for x in t])
        speed = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1) / np.diff(t)
        rel = np.einsum("nji,njk->nik", poses[:-1, :3, :3], poses[1:, :3, :3])  # R_a^T R_b
        angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
        assert speed.min() >= 0.2 and speed.max() <= 0.6, (k, speed.min(), speed.max())
        assert (angle / np.diff(t)).min() >= 10 and (angle / np.diff(t)).max() <= 40
        for i, x in enumerate(plan.clock.rgb):
            camera = plan.camera(x, i)
            assert trace_depth(plan.scene, camera, stride=NEAR_STRIDE).min() >= MIN_DEPTH
            _, depth, _ = render_frame(plan.scene, camera, (params.height, params.width))
            assert depth.min() >= KINECT_MIN  # the sensor's own near limit, at the rendered pixels


def _agreement(seq, i: int, j: int, rel: np.ndarray) -> float:
    """Share of frame i's depth pixels that, moved by `rel` into frame j, land where j's depth says (3%)."""
    k = seq.intrinsics
    points, _ = back_project(load_depth(seq.frames[i].depth_path), k)  # (N, 3) in camera i
    p = points @ rel[:3, :3].T + rel[:3, 3]  # (N, 3) in camera j
    u = np.round(p[:, 0] / p[:, 2] * k.fx + k.cx).astype(int)
    v = np.round(p[:, 1] / p[:, 2] * k.fy + k.cy).astype(int)
    inside = (p[:, 2] > 0) & (u >= 0) & (u < k.width) & (v >= 0) & (v < k.height)
    dj = load_depth(seq.frames[j].depth_path)[v[inside], u[inside]]
    z = p[inside, 2]
    valid = dj > 0
    assert valid.sum() > 0.3 * len(points)
    return float((np.abs(z[valid] - dj[valid]) < 0.03 * dj[valid]).mean())


def test_pose_depth_and_intrinsics_agree_geometrically(tmp_path: Path) -> None:
    params = dataclasses.replace(SMALL, frames=12, height=96, width=128)
    _, seq = _written(tmp_path, params, k=1)
    for i, j in ((0, 3), (2, 7), (5, 9)):
        Ti, Tj = seq.frames[i].pose, seq.frames[j].pose
        assert _agreement(seq, i, j, np.linalg.inv(Tj) @ Ti) > 0.85
        # The test can fail: the motion is large enough that ignoring it, or inverting it, does not fit.
        assert _agreement(seq, i, j, np.linalg.inv(Ti) @ Tj) < 0.7


@pytest.mark.parametrize("n_images", [96, 800])  # params.yaml's and the demo's depth data
def test_sequences_never_use_a_room_of_the_depth_data(n_images: int) -> None:
    seed = repo_raw()["data"]["synthetic"]["seed"]
    depth_rooms = [scene_of(seed, slot) for slot in plan_scenes(n_images, seed)]
    for seq_seed in (seed, seed + 1):
        rooms = [sequence_room(seq_seed, k) for k in range(20)]
        assert not {(r.size, r.texture_seed) for r in rooms} & {(r.size, r.texture_seed) for r in depth_rooms}
        assert not {r.name for r in rooms} & {r.name for r in depth_rooms}
    # The check can fail: the depth data's own rooms collide with themselves.
    assert scene_of(seed, plan_scenes(n_images, seed)[0]) == depth_rooms[0]


def test_auto_exposure_follows_the_meter_slowly() -> None:
    exposure = AutoExposure(fps=30.0, time_constant_s=0.5)
    assert exposure(0.5) == pytest.approx(0.9 / 0.5)  # the first frame: as a single frame's own exposure
    gains = [exposure(1.0) for _ in range(45)]  # the scene doubles in brightness
    steps = np.abs(np.diff(np.log([1.8, *gains])))
    assert steps.max() < 0.05  # a few % a frame, not a jump
    assert gains[-1] == pytest.approx(0.9, rel=0.06)  # settled after 1.5 s (3 time constants)


def test_a_hooked_exposure_that_mimics_the_default_renders_the_same_frame() -> None:
    plan = plan_sequence(SMALL, 0)
    cam = plan.camera(plan.clock.rgb[0], 0)
    a = render_frame(plan.scene, cam, (SMALL.height, SMALL.width))
    b = render_frame(plan.scene, cam, (SMALL.height, SMALL.width), exposure=lambda meter: 0.9 / meter)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
