"""RPE and ATE (pipeline/trajectory/metrics.py) on trajectories whose answer is known by construction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipeline.errors import PipelineError
from pipeline.trajectory.metrics import pair_errors, score_pairs, score_trajectory
from pipeline.trajectory.poses import chain, relative_motion

ROOT = Path(__file__).resolve().parents[1]


def _pose(rotvec: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def _handheld(n: int = 40, seed: int = 0, rate: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth hand-held-like trajectory: ~0.4 m/s along a curve, looking around by ~20 deg/s."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    a, b, c = rng.uniform(0.5, 1.5, 3)
    pos = np.stack([0.4 * t * a, 0.1 * np.sin(2 * t * b), 0.3 * np.cos(1.5 * t * c)], axis=1)  # (N, 3)
    rot = np.stack([0.2 * np.sin(t), 0.35 * t, 0.05 * np.cos(3 * t)], axis=1)  # (N, 3) rotation vectors
    poses = np.stack([_pose(r, p) for r, p in zip(rot, pos, strict=True)])
    return 1000.0 + t, poses


def _centroid_rms(poses: np.ndarray) -> float:
    p = poses[:, :3, 3]
    return float(np.sqrt(np.mean(np.sum((p - p.mean(axis=0)) ** 2, axis=1))))


def test_rigidly_moved_copy_scores_zero() -> None:
    stamps, gt = _handheld()
    G = _pose(np.array([0.3, -1.0, 0.5]), np.array([2.0, -0.5, 7.0]))
    out = score_trajectory(stamps, gt, stamps, G @ gt)
    assert out["n_poses"] == len(gt)
    assert out["ate"]["se3"]["rmse_m"] < 1e-9
    assert out["ate"]["sim3"]["rmse_m"] < 1e-9
    assert out["ate"]["sim3"]["scale"] == pytest.approx(1.0, abs=1e-9)
    for gap in (1, 2, 4, 8):
        entry = out["rpe"][f"gap_{gap}"]
        assert entry["n"] == len(gt) - gap  # all pairs (i, i + gap)
        assert entry["trans_m"]["rmse"] < 1e-9 and entry["rot_deg"]["rmse"] < 1e-6


def test_scaled_copy_scores_zero_under_sim3_only() -> None:
    stamps, gt = _handheld(seed=1)
    est = gt.copy()
    est[:, :3, 3] *= 0.5  # a monocular estimate at half the scale, in the same world frame
    out = score_trajectory(stamps, gt, stamps, est)
    assert out["ate"]["sim3"]["rmse_m"] < 1e-9
    assert out["ate"]["sim3"]["scale"] == pytest.approx(2.0, rel=1e-9)
    assert out["ate"]["se3"]["rmse_m"] > 0.05 * _centroid_rms(gt)


def test_standing_still_scores_the_motion_itself() -> None:
    stamps, gt = _handheld(seed=2)
    still = np.repeat(np.eye(4)[None], len(gt), axis=0)
    out = score_trajectory(stamps, gt, stamps, still, gaps=(1, 4))
    rms = _centroid_rms(gt)  # the best a single point can do: sit at the centroid
    assert out["ate"]["se3"]["rmse_m"] == pytest.approx(rms, rel=1e-9)
    assert out["ate"]["sim3"]["rmse_m"] == pytest.approx(rms, rel=1e-9)
    assert out["ate"]["sim3"]["scale"] is None
    for gap in (1, 4):
        motion = relative_motion(gt[:-gap], gt[gap:])  # (N - gap, 4, 4)
        dist = np.linalg.norm(motion[:, :3, 3], axis=1)
        angle = np.degrees(Rotation.from_matrix(motion[:, :3, :3]).magnitude())
        entry = out["rpe"][f"gap_{gap}"]
        assert entry["trans_m"]["rmse"] == pytest.approx(np.sqrt(np.mean(dist**2)), rel=1e-9)
        assert entry["trans_m"]["median"] == pytest.approx(np.median(dist), rel=1e-9)
        assert entry["rot_deg"]["mean"] == pytest.approx(angle.mean(), rel=1e-9)


def test_pair_scorer_agrees_with_trajectory_rpe_on_a_chained_estimate() -> None:
    stamps, gt = _handheld(seed=3)
    rng = np.random.default_rng(3)
    motion_gt = relative_motion(gt[:-1], gt[1:])
    noise = np.stack([_pose(rng.normal(0, 0.01, 3), rng.normal(0, 0.005, 3)) for _ in motion_gt])
    motion_est = noise @ motion_gt
    est = chain(motion_est, first=gt[0])
    np.testing.assert_allclose(chain(motion_gt, first=gt[0]), gt, atol=1e-9)  # chaining inverts relative_motion
    by_pairs = score_pairs(motion_gt, motion_est, np.ones(len(motion_gt), dtype=int))["rpe"]["gap_1"]
    by_traj = score_trajectory(stamps, gt, stamps, est, gaps=(1,))["rpe"]["gap_1"]
    assert by_pairs["n"] == by_traj["n"] == len(motion_gt)
    for kind in ("trans_m", "rot_deg"):
        for stat in ("rmse", "mean", "median"):
            assert by_pairs[kind][stat] == pytest.approx(by_traj[kind][stat], rel=1e-9)
            assert by_pairs[kind][stat] > 0


def test_known_perturbation_gives_exactly_that_error() -> None:
    _, gt = _handheld(seed=4)
    motion_gt = relative_motion(gt[:-1], gt[1:])
    one_deg_z = _pose(np.radians([0.0, 0.0, 1.0]), np.zeros(3))
    trans, rot = pair_errors(motion_gt, one_deg_z @ motion_gt)
    np.testing.assert_allclose(rot, 1.0, atol=1e-9)
    np.testing.assert_allclose(trans, 0.0, atol=1e-12)
    shift = _pose(np.zeros(3), np.array([0.0, 0.03, 0.04]))  # 5 cm
    trans, rot = pair_errors(motion_gt, shift @ motion_gt)
    np.testing.assert_allclose(trans, 0.05, atol=1e-12)
    np.testing.assert_allclose(rot, 0.0, atol=1e-6)


def test_pairs_are_grouped_by_gap() -> None:
    _, gt = _handheld(seed=5)
    i, j = np.array([0, 1, 2, 0, 3]), np.array([1, 2, 3, 4, 7])
    motion_gt = relative_motion(gt[i], gt[j])
    est = motion_gt.copy()
    est[3] = _pose(np.radians([0.0, 2.0, 0.0]), np.zeros(3)) @ est[3]
    out = score_pairs(motion_gt, est, j - i)["rpe"]
    assert list(out) == ["gap_1", "gap_4"]
    assert out["gap_1"]["n"] == 3 and out["gap_1"]["rot_deg"]["rmse"] < 1e-9
    assert out["gap_4"]["n"] == 2 and out["gap_4"]["rot_deg"]["mean"] == pytest.approx(1.0, abs=1e-9)
    json.dumps(out)  # plain JSON types


def test_a_mocap_dropout_leaves_its_frames_and_every_pair_they_end_unscored() -> None:
    stamps, gt = _handheld(n=20, seed=3)
    rng = np.random.default_rng(3)
    est = np.stack([P @ _pose(rng.normal(0, 0.01, 3), rng.normal(0, 0.005, 3)) for P in gt])
    have = np.ones(20, bool)
    have[[8, 9]] = False  # 67 ms without ground truth, as TUM's fr1 dropouts
    out = score_trajectory(stamps[have], gt[have], stamps, est, gaps=(1, 2))
    assert (out["frames"], out["frames_scored"], out["n_poses"]) == (20, 18, 18)
    # Gap 1: not (7, 10) as a pair of neighbouring *scored* frames; only the 16 pairs of true neighbours.
    i = np.array([k for k in range(19) if have[k] and have[k + 1]])
    trans, rot = pair_errors(relative_motion(gt[i], gt[i + 1]), relative_motion(est[i], est[i + 1]))
    assert out["rpe"]["gap_1"]["n"] == len(i) == 16
    assert out["rpe"]["gap_1"]["rot_deg"]["rmse"] == pytest.approx(np.sqrt(np.mean(rot**2)), rel=1e-12)
    assert out["rpe"]["gap_1"]["trans_m"]["rmse"] == pytest.approx(np.sqrt(np.mean(trans**2)), rel=1e-12)
    assert out["rpe"]["gap_2"]["n"] == 18 - 4  # of 18 pairs (k, k + 2): (6, 8), (7, 9), (8, 10), (9, 11) dropped


def test_timestamps_are_associated_nearest_within_the_tolerance() -> None:
    stamps, gt = _handheld(n=60, seed=6, rate=100.0)  # ground truth at 100 Hz, as TUM's mocap
    est_idx = np.arange(0, 60, 3)
    est_stamps = stamps[est_idx] + 0.004  # the camera's clock, a few ms off
    G = _pose(np.array([0.0, 0.5, 0.0]), np.array([1.0, 0.0, 0.0]))
    out = score_trajectory(stamps, gt, est_stamps, G @ gt[est_idx], gaps=(1,))
    assert out["n_poses"] == len(est_idx)
    assert out["ate"]["se3"]["rmse_m"] < 1e-9
    with pytest.raises(PipelineError, match="within 0.02 s"):
        score_trajectory(stamps, gt, stamps + 5.0, gt)


def test_a_gap_longer_than_the_trajectory_has_no_pairs_and_json_null_statistics() -> None:
    stamps, gt = _handheld(n=5, seed=7)
    out = score_trajectory(stamps, gt, stamps, gt, gaps=(1, 8))
    assert out["rpe"]["gap_8"] == {
        "n": 0,
        "trans_m": dict.fromkeys(("rmse", "mean", "median")),
        "rot_deg": dict.fromkeys(("rmse", "mean", "median")),
    }
    json.loads(json.dumps(out))


def test_bad_poses_are_refused() -> None:
    stamps, gt = _handheld(n=5, seed=8)
    bad = gt.copy()
    bad[2, :3, :3] *= 1.1
    with pytest.raises(ValueError, match="proper rotation"):
        score_trajectory(stamps, gt, stamps, bad)
    with pytest.raises(ValueError, match="shape"):
        score_pairs(gt[:, :3], gt[:, :3], np.ones(5))


def test_importing_the_metrics_needs_no_display_and_writes_no_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import sys; import pipeline.trajectory.metrics, pipeline.trajectory.baselines, pipeline.trajectory.published; "
        "print(sorted(m for m in ('matplotlib', 'evo.tools', 'open3d') if m in sys.modules))"
    )
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT), "DISPLAY": "", "XDG_CONFIG_HOME": str(home)}
    env.pop("MPLBACKEND", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"  # Open3D is imported lazily, by the baseline only
    assert list(home.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_float32_estimates_chained_over_a_long_trajectory_are_accepted() -> None:
    stamps, gt = _handheld(n=600, seed=9)
    motion32 = relative_motion(gt[:-1], gt[1:]).astype(np.float32)  # what a float32 solver returns
    est = chain(motion32, first=gt[0])
    out = score_trajectory(stamps, gt, stamps, est, gaps=(1,))
    assert out["ate"]["se3"]["rmse_m"] < 1e-3 and out["rpe"]["gap_1"]["rot_deg"]["rmse"] < 1e-2


def test_rotations_a_float32_solver_leaves_slightly_off_orthogonal_are_scored() -> None:
    # evo's is_so3 check is exact to ~1e-8; a solver's float32 composition drifts by ~1e-5.
    stamps, gt = _handheld(n=20, seed=3)
    est = gt.copy()
    est[:, :3, :3] *= 1 + 2e-5  # a uniform stretch: R R^T = (1 + 4e-5) I, well inside check_poses' 1e-3
    out = score_trajectory(stamps, gt, stamps, est, gaps=(1, 2))
    assert out["rpe"]["gap_2"]["rot_deg"]["rmse"] < 1e-6 and out["ate"]["se3"]["rmse_m"] < 1e-9
