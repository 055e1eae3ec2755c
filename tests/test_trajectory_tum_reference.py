"""The CLI's printed ATE and RPE against TUM RGB-D's own evaluation arithmetic, on a committed real trajectory.

The reference below is written here from the published definitions in TUM's
`evaluate_ate.py` and `evaluate_rpe.py` (none of their code is vendored): association of
each estimated pose with the ground-truth sample nearest in time, within 0.02 s (at
100 Hz ground truth, TUM's 2 x median interval is the same 0.02 s), no interpolation;
ATE after Horn's closed-form rigid alignment; RPE over frame pairs (i, i + 1) with the
rotation error arccos((trace R - 1) / 2); RMSE = sqrt(mean(e^2)). The fixture holds a TUM
mocap dropout, so it also checks that the unmatched frames and pairs are dropped as TUM does.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.odometry import Odometry, score_line
from pipeline.pose.frames import load_frames
from pipeline.sequences.layout import read_sequence

FIXTURE = Path(__file__).parent / "fixtures" / "rgbd_dataset_freiburg1_rpy_real"
ESTIMATE = FIXTURE / "estimate_rgb_sensor_96x128.txt"


def _tum_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N,) stamps and (N, 4, 4) poses of a TUM trajectory file; quaternion to matrix written out."""
    rows = np.array([[float(v) for v in ln.split()] for ln in path.read_text().splitlines() if ln[:1] != "#"])
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    # Normalised first, as evaluate_rpe.py's transform44 does: TUM writes 4 decimals, so |q| is 1 only to
    # ~1e-4, and an unnormalised matrix puts ~0.3 deg of spurious angle into arccos near 1.
    for T, q in zip(poses, rows[:, 4:8], strict=True):
        x, y, z, w = q / np.linalg.norm(q)
        T[:3, :3] = [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    poses[:, :3, 3] = rows[:, 1:4]
    return rows[:, 0], poses


def _nearest(gt_t: np.ndarray, t: float, max_diff: float = 0.02) -> int | None:
    k = int(np.abs(gt_t - t).argmin())
    return k if abs(gt_t[k] - t) <= max_diff else None


def _horn_ate_rmse(model: np.ndarray, data: np.ndarray) -> float:
    """evaluate_ate.py's align(): rotation and translation taking `model` (3, n) onto `data` (3, n), then RMSE."""
    mz, dz = model - model.mean(1, keepdims=True), data - data.mean(1, keepdims=True)
    U, _, Vh = np.linalg.svd((mz @ dz.T).T)
    S = np.diag([1.0, 1.0, -1.0 if np.linalg.det(U) * np.linalg.det(Vh) < 0 else 1.0])
    rot = U @ S @ Vh
    err = rot @ model + (data.mean(1, keepdims=True) - rot @ model.mean(1, keepdims=True)) - data
    return float(np.sqrt(np.mean(np.sum(err**2, axis=0))))


def _tum_reference() -> dict[str, float]:
    gt_t, gt = _tum_file(FIXTURE / "groundtruth.txt")
    est_t, est = _tum_file(ESTIMATE)
    match = [_nearest(gt_t, t) for t in est_t]
    have = [i for i, k in enumerate(match) if k is not None]
    ate = _horn_ate_rmse(est[have, :3, 3].T, gt[[match[i] for i in have], :3, 3].T)
    rot, trans_paper, trans_script = [], [], []
    for i in range(len(est) - 1):
        a, b = match[i], match[i + 1]
        if a is None or b is None:
            continue  # evaluate_rpe.py skips a pair whose ground truth is too far in time
        P = np.linalg.inv(est[i]) @ est[i + 1]  # the estimate's relative pose
        Q = np.linalg.inv(gt[a]) @ gt[b]
        E_script = np.linalg.inv(np.linalg.inv(est[i + 1]) @ est[i]) @ (np.linalg.inv(gt[b]) @ gt[a])  # its ominus
        E_paper = np.linalg.inv(Q) @ P  # Sturm et al. 2012, eq. 1 (evo's order)
        rot.append(np.arccos(min(1.0, max(-1.0, (np.trace(E_script[:3, :3]) - 1) / 2))))
        trans_script.append(np.linalg.norm(E_script[:3, 3]))
        trans_paper.append(np.linalg.norm(E_paper[:3, 3]))
    rmse = lambda e: float(np.sqrt(np.mean(np.square(e))))  # noqa: E731
    return {"ate_m": ate, "rot_deg": np.degrees(rmse(rot)), "trans_m": rmse(trans_paper),
            "trans_script_m": rmse(trans_script), "frames": len(have), "pairs": len(rot)}  # fmt: skip


def test_printed_ate_and_rpe_are_tums_arithmetic_on_real_frames() -> None:
    ref = _tum_reference()
    frames = load_frames(read_sequence(FIXTURE, require_groundtruth=False), (96, 128), 0)
    est_t, est = _tum_file(ESTIMATE)
    np.testing.assert_allclose(est_t, frames.times, atol=1e-6)
    line = score_line(frames, Odometry(est_t, est, np.ones(len(est) - 1, bool), 1.0))
    got = re.search(r"ATE RMSE ([\d.]+) m \(SE\(3\).*RPE per frame ([\d.]+) m, ([\d.]+) deg; "
                    r"scored (\d+)/(\d+) frames, (\d+)/(\d+) pairs \(nearest", line)  # fmt: skip
    assert got, line
    ate, trans, rot, frames_scored, n, pairs, n_pairs = (float(v) for v in got.groups())
    assert (frames_scored, n, pairs, n_pairs) == (ref["frames"], len(est), ref["pairs"], len(est) - 1)
    assert (frames_scored, pairs) == (8, 5)  # the dropout leaves 2 of 10 frames and 4 of 9 pairs unscored
    assert ate == pytest.approx(ref["ate_m"], abs=5e-5)  # printed to 4 decimals
    assert trans == pytest.approx(ref["trans_m"], abs=5e-5)
    assert rot == pytest.approx(ref["rot_deg"], abs=5e-4)  # printed to 3 decimals
    # evaluate_rpe.py composes the error as P_rel inv(Q_rel), the paper (and evo) as inv(Q_rel) P_rel:
    # conjugates, so the angle is the same and the translation differs by at most ~ angle x |motion|.
    assert ref["trans_script_m"] == pytest.approx(ref["trans_m"], rel=0.05)


def test_interpolated_ground_truth_is_labelled_and_differs() -> None:
    seq = read_sequence(FIXTURE, require_groundtruth=False, interpolate_groundtruth=True)
    frames = load_frames(seq, (96, 128), 0)
    est_t, est = _tum_file(ESTIMATE)
    line = score_line(frames, Odometry(est_t, est, np.ones(len(est) - 1, bool), 1.0), "interpolated")
    assert "INTERPOLATED" in line and "not TUM's scoring" in line
    rot = float(re.search(r"RPE per frame [\d.]+ m, ([\d.]+) deg", line).group(1))  # type: ignore[union-attr]
    assert rot != pytest.approx(_tum_reference()["rot_deg"], abs=5e-4)
