"""Matching timestamps of two streams, as TUM RGB-D's tools do.

`associate` is TUM's associate.py: every pair within the tolerance, closest first, each
timestamp used once. `pose_at` reads a pose from a faster ground-truth stream (the
mocap's 100 Hz): by default the nearest sample within the tolerance, as TUM's
evaluate_ate.py / evaluate_rpe.py and evo's default association do (docs/odometry-protocol.md);
interpolated between the two samples around the time only when asked (a labelled variant).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def associate(a: np.ndarray, b: np.ndarray, tolerance_s: float) -> dict[int, int]:
    """Index pairs {i: j} with |a[i] - b[j]| <= tolerance_s, greedily closest first, each index once.

    Args:
        a: (N,) timestamps in seconds (any order).
        b: (M,) timestamps in seconds.
        tolerance_s: the largest difference to accept (TUM's max_difference, 0.02 s).
    """
    order = np.argsort(b)
    sb = b[order]
    lo = np.searchsorted(sb, a - tolerance_s, side="left")
    hi = np.searchsorted(sb, a + tolerance_s, side="right")
    pairs = [(abs(a[i] - sb[k]), i, int(order[k])) for i in range(len(a)) for k in range(lo[i], hi[i])]
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in sorted(pairs):
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


def pose_at(
    t: float, times: np.ndarray, poses: np.ndarray, tolerance_s: float, interpolate: bool = False
) -> np.ndarray | None:
    """The (4, 4) pose at time `t` from sorted samples `times` (K,), `poses` (K, 4, 4); None if none is near.

    The nearest sample within `tolerance_s` (a tie goes to the earlier one). With
    `interpolate`, position is interpolated linearly and rotation by slerp between the
    samples just before and after `t` when both lie within `tolerance_s`.
    """
    k = int(np.searchsorted(times, t, side="right"))  # times[k - 1] <= t < times[k]
    before, after = k - 1, k
    near_before = before >= 0 and t - times[before] <= tolerance_s
    near_after = after < len(times) and times[after] - t <= tolerance_s
    if interpolate and near_before and near_after and times[after] > times[before]:
        return _interpolated(t, times[[before, after]], poses[[before, after]])
    if near_before and (not near_after or t - times[before] <= times[after] - t):
        return poses[before].copy()
    if near_after:
        return poses[after].copy()
    return None


def _interpolated(t: float, times: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Linear position and slerp rotation between two samples (2,), (2, 4, 4) around `t`."""
    w = (t - times[0]) / (times[1] - times[0])
    rot = Slerp([0.0, 1.0], Rotation.from_matrix(poses[:, :3, :3]))([w])
    out = np.eye(4)
    out[:3, :3] = rot.as_matrix()[0]
    out[:3, 3] = (1 - w) * poses[0, :3, 3] + w * poses[1, :3, 3]
    return out
