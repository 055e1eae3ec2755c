"""The two baselines every pose result is shown against, on the same frame pairs.

- `identity`: the camera stands still (T_j_from_i = I). Its RPE is the ground truth's own
  motion: an estimator that does not beat it has learned nothing about motion.
- `open3d`: classical dense RGB-D odometry from a well-kept library, Open3D's
  `compute_rgbd_odometry` with sensor depth and its hybrid term
  (`RGBDOdometryJacobianFromHybridTerm`: photometric + geometric residuals, Park, Zhou
  and Koltun, ICCV 2017), coarse to fine over an image pyramid, from the identity.

Open3D is imported lazily, only by this baseline, through `open3d_lib.import_open3d`
(which supplies libusb-1.0 from the package index).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from pipeline.camera import Intrinsics
from pipeline.trajectory.open3d_lib import import_open3d

# Defaults for indoor Kinect data. The depth range: 0.3 m is the nearest depth Open3D's
# reconstruction system uses; 6 m, not OdometryOption's own 4 m: NYU-like rooms (and the
# synthetic ones) put up to 60 % of the pixels beyond 4 m, and on 12 synthetic rooms at
# 120x160 a 4 m cut put 7/12 pairs at an 8-frame gap within 1 cm and 1 deg (one metres
# off: RMSE 3.3 m), 6 m put 11/12 there (RMSE 0.045 m; benchmarks/open3d_baseline.py).
# Beyond ~6 m a Kinect's depth noise (growing with the square of the distance) is several
# cm. 0.07 m as the largest depth difference of a correspondence is the reconstruction
# system's max_depth_diff
# (OdometryOption's 0.03 rejects too many at gaps of several frames). 20/10/5
# Gauss-Newton iterations from the coarsest level to the finest are OdometryOption's
# defaults (three levels: 1/4, 1/2 and full resolution).
DEPTH_RANGE_M = (0.3, 6.0)
DEPTH_DIFF_MAX_M = 0.07
ITERATIONS = (20, 10, 5)


def identity_motion(n: int) -> np.ndarray:
    """The standing-still estimate for `n` pairs: (n, 4, 4) identities."""
    return np.repeat(np.eye(4)[None], n, axis=0)


def _rgbd(o3d: ModuleType, rgb: np.ndarray, depth: np.ndarray, depth_max: float) -> object:
    """An Open3D RGBDImage: intensity in [0, 1] from the RGB, depth in metres (0 = no reading)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"depth is {depth.shape}, rgb is {rgb.shape[:2]}")
    depth = np.nan_to_num(np.asarray(depth, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)  # NaN = no reading
    return o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(np.ascontiguousarray(rgb)),
        o3d.geometry.Image(np.ascontiguousarray(depth)),
        depth_scale=1.0,  # already metres
        depth_trunc=depth_max,
        convert_rgb_to_intensity=True,
    )


def open3d_odometry(
    rgb_target: np.ndarray,
    depth_target: np.ndarray,
    rgb_source: np.ndarray,
    depth_source: np.ndarray,
    intrinsics: Intrinsics,
    depth_range_m: tuple[float, float] = DEPTH_RANGE_M,
    depth_diff_max_m: float = DEPTH_DIFF_MAX_M,
    iterations: tuple[int, ...] = ITERATIONS,
) -> tuple[np.ndarray, bool]:
    """Open3D's RGB-D odometry (hybrid term) for one pair: T_j_from_i and whether Open3D reports success.

    Args:
        rgb_target: frame i's image, (H, W, 3) uint8.
        depth_target: frame i's sensor depth, (H, W) float32 metres, 0 = no reading.
        rgb_source: frame j's image, the same.
        depth_source: frame j's sensor depth, the same.
        intrinsics: the camera of both frames, at (H, W).
        depth_range_m: (nearest, farthest) depth used, metres.
        depth_diff_max_m: largest depth difference of a correspondence, metres.
        iterations: Gauss-Newton iterations per pyramid level, coarsest first.

    Returns:
        (T (4, 4) float64 mapping camera i's points into camera j's, success). Open3D
        returns the transform that maps its *source* image's points onto its *target*'s,
        so frame i is passed as Open3D's source and frame j as its target.
    """
    o3d = import_open3d()
    h, w = depth_target.shape
    if (intrinsics.width, intrinsics.height) != (w, h):
        raise ValueError(f"intrinsics are for {intrinsics.width}x{intrinsics.height}, frames are {w}x{h}")
    odometry = o3d.pipelines.odometry
    option = odometry.OdometryOption(
        iteration_number_per_pyramid_level=o3d.utility.IntVector(list(iterations)),
        depth_diff_max=depth_diff_max_m,
        depth_min=depth_range_m[0],
        depth_max=depth_range_m[1],
    )
    camera = o3d.camera.PinholeCameraIntrinsic(w, h, intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    success, T, _info = odometry.compute_rgbd_odometry(
        _rgbd(o3d, rgb_target, depth_target, depth_range_m[1]),  # Open3D's source: our target i
        _rgbd(o3d, rgb_source, depth_source, depth_range_m[1]),  # Open3D's target: our source j
        camera,
        np.eye(4),
        odometry.RGBDOdometryJacobianFromHybridTerm(),
        option,
    )
    return np.asarray(T, dtype=np.float64), bool(success)
