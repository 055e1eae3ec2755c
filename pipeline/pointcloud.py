"""Coloured point clouds from depth maps: pinhole back-projection and binary PLY files.

Depth here is z-depth (distance along the optical axis, as NYU stores it and the
network predicts), so a pixel (u, v) with depth z lies at
x = (u - cx) z / fx, y = (v - cy) z / fy, z: camera frame, OpenCV convention (x right,
y down, z forward), metres. A viewer with y up shows it upside down: flip y and z.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.camera import Intrinsics
from pipeline.io import atomic_path

# One vertex: three little-endian float32 coordinates, then three uint8 colours. The
# names are the ones every PLY reader (MeshLab, Open3D, CloudCompare, plyfile) maps.
PLY_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def back_project(depth: np.ndarray, camera: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """The 3-D points of an (H, W) z-depth map.

    Args:
        depth: (H, W) metres; pixels that are not finite or <= 0 (no measurement,
            or outside a crop) give no point.
        camera: intrinsics in this image's pixels (`camera.width`, `camera.height` = W, H).

    Returns:
        (points, valid): (N, 3) float32 metres for the N valid pixels in row-major
        order, and the (H, W) bool mask of those pixels.
    """
    H, W = depth.shape
    if (camera.height, camera.width) != (H, W):
        raise ValueError(f"depth is {H}x{W}, intrinsics are for {camera.height}x{camera.width}")
    valid = np.isfinite(depth) & (depth > 0)  # (H, W)
    v, u = np.nonzero(valid)  # (N,) each, row-major
    z = depth[v, u].astype(np.float64)
    x = (u - camera.cx) * z / camera.fx
    y = (v - camera.cy) * z / camera.fy
    return np.stack([x, y, z], axis=1).astype(np.float32), valid


def write_ply(path: str | Path, points: np.ndarray, colours: np.ndarray) -> None:
    """Writes a binary little-endian PLY of coloured vertices, atomically.

    Args:
        path: output file, e.g. `room.ply`.
        points: (N, 3) metres.
        colours: (N, 3) uint8 RGB.
    """
    if points.shape != colours.shape or points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points {points.shape} and colours {colours.shape} must both be (N, 3)")
    vertices = np.empty(len(points), dtype=PLY_VERTEX)  # (N,) records, packed: 15 bytes each
    for i, axis in enumerate("xyz"):
        vertices[axis] = points[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertices[channel] = colours[:, i]
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment metres, camera frame: x right, y down, z forward\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertices.tobytes())
