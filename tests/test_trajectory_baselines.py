"""The identity and Open3D baselines (pipeline/trajectory/baselines.py) on rendered pairs of known motion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.camera import NYU_KINECT
from pipeline.synthetic.raycast import camera_to_world, render_frame
from pipeline.synthetic.scenes import sample_camera, sample_scene
from pipeline.trajectory.baselines import identity_motion, open3d_odometry
from pipeline.trajectory.metrics import pair_errors, score_pairs
from pipeline.trajectory.poses import relative_motion

SIZE = (120, 160)  # (h, w): small enough to render and align in well under a second


def _pair(seed: int, move: tuple[float, float, float], yaw_deg: float):
    """Target i and source j rendered in one room, j moved by `move` (renderer world, m) and turned by `yaw_deg`."""
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, seed)
    cam_i = sample_camera(rng, scene)
    pos = tuple(p + d for p, d in zip(cam_i.position, move, strict=True))
    cam_j = dataclasses.replace(
        cam_i, position=pos, yaw=cam_i.yaw + np.radians(yaw_deg), noise_seed=cam_i.noise_seed + 1
    )
    (rgb_i, _, raw_i), (rgb_j, _, raw_j) = render_frame(scene, cam_i, SIZE), render_frame(scene, cam_j, SIZE)
    motion = relative_motion(camera_to_world(cam_i)[None], camera_to_world(cam_j)[None])[0]  # T_j_from_i
    return (rgb_i, raw_i), (rgb_j, raw_j), motion


@pytest.mark.parametrize(("seed", "move", "yaw_deg"), [(0, (0.02, 0.0, 0.01), 1.0), (3, (-0.03, 0.01, 0.04), -2.0)])
def test_open3d_returns_the_motion_from_target_to_source(seed, move, yaw_deg) -> None:
    (rgb_i, depth_i), (rgb_j, depth_j), motion = _pair(seed, move, yaw_deg)
    K = NYU_KINECT.scaled(SIZE[1], SIZE[0])
    T, success = open3d_odometry(rgb_i, depth_i, rgb_j, depth_j, K)
    assert success and T.shape == (4, 4)
    trans, rot = pair_errors(motion[None], T[None])
    # Kinect holes and noise in the rendered depth leave a few mm; a wrong direction would
    # leave about twice the motion (>= 4 cm and >= 2 deg here).
    assert trans[0] < 0.008 and rot[0] < 0.5
    trans_inv, rot_inv = pair_errors(motion[None], np.linalg.inv(T)[None])
    assert trans_inv[0] > 5 * trans[0] and rot_inv[0] > 3 * rot[0]


def test_identity_baseline_scores_the_ground_truth_motion() -> None:
    *_, motion = _pair(1, (0.05, 0.0, 0.0), 3.0)
    out = score_pairs(motion[None], identity_motion(1), [1])["rpe"]["gap_1"]
    assert out["trans_m"]["rmse"] == pytest.approx(np.linalg.norm(motion[:3, 3]), rel=1e-9)
    assert out["rot_deg"]["rmse"] == pytest.approx(3.0, abs=1e-6)  # a pure yaw of 3 deg


def test_wrong_inputs_are_refused() -> None:
    (rgb_i, depth_i), (rgb_j, depth_j), _ = _pair(0, (0.01, 0.0, 0.0), 0.0)
    with pytest.raises(ValueError, match="intrinsics"):
        open3d_odometry(rgb_i, depth_i, rgb_j, depth_j, NYU_KINECT)
    K = NYU_KINECT.scaled(SIZE[1], SIZE[0])
    with pytest.raises(ValueError, match="uint8"):
        open3d_odometry(rgb_i.astype(np.float32), depth_i, rgb_j, depth_j, K)
