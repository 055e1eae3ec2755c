"""Camera poses and the motion between two frames, in the one convention every pose module shares.

A trajectory is timestamps (N,) float64 seconds and poses (N, 4, 4) float64
camera-to-world (OpenCV/TUM camera: x right, y down, z forward). For a frame pair
(target i, source j) the relative motion is `T_j_from_i = inv(P_j) @ P_i`: it maps a
point in camera i's frame into camera j's (X_j = T @ X_i). A pose estimator estimates
exactly this per pair; chaining estimates gives back a trajectory: P_j = P_i @ inv(T_j_from_i).
"""

from __future__ import annotations

import numpy as np


def check_poses(poses: np.ndarray, name: str) -> np.ndarray:
    """`poses` as an (N, 4, 4) float64 array; ValueError naming `name` when it is not one of finite rigid motions."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"{name}: expected (N, 4, 4) poses, got shape {poses.shape}")
    if not np.all(np.isfinite(poses)):
        raise ValueError(f"{name}: poses contain NaN or inf")
    R = poses[:, :3, :3]  # (N, 3, 3)
    # 1e-3: float32 estimates chained over hundreds of frames, or written to a TUM file with
    # a few decimals and read back, drift from orthogonality by ~1e-6..1e-4; a wrong matrix
    # (a scale, a shear, a transposed layout) is off by far more.
    if not np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-3) or np.any(np.linalg.det(R) < 0):
        raise ValueError(f"{name}: the rotation part is not a proper rotation (R R^T != I or det < 0)")
    # ... and evo's own check (is_so3) is exact to ~1e-8: hand it the nearest rotation (SVD projection),
    # which moves a float32 estimate by its rounding only.
    U, _, Vt = np.linalg.svd(R)
    poses = poses.copy()
    poses[:, :3, :3] = U @ Vt
    return poses


def relative_motion(poses_i: np.ndarray, poses_j: np.ndarray) -> np.ndarray:
    """T_j_from_i = inv(P_j) @ P_i for camera-to-world poses (N, 4, 4) of targets i and sources j -> (N, 4, 4)."""
    return np.linalg.inv(poses_j) @ poses_i


def chain(motions: np.ndarray, first: np.ndarray | None = None) -> np.ndarray:
    """Frame-to-frame motions T_{k+1}_from_k (N-1, 4, 4) -> camera-to-world poses (N, 4, 4).

    Args:
        motions: the motion from each frame to the next, in the pair convention above.
        first: the first camera's pose (4, 4); the identity (first frame at the origin) by default.
    """
    # Each float32 estimate's rotation is off orthogonal by ~1e-5; chained over 400 real
    # frames that grew to 6e-3 (fr1/rpy), past check_poses' bound: project each one first.
    motions = check_poses(motions, "motions") if len(motions) else np.asarray(motions, dtype=np.float64)
    poses = np.empty((len(motions) + 1, 4, 4))
    poses[0] = np.eye(4) if first is None else first
    for k, T in enumerate(motions):
        poses[k + 1] = poses[k] @ np.linalg.inv(T)  # P_j = P_i @ inv(T_j_from_i)
    return poses
