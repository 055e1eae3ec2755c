"""Back-projection (a known plane stays a plane), intrinsics of framed images, and PLY files that parse back."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.camera import NYU_KINECT, Intrinsics, framing
from pipeline.pointcloud import back_project, write_ply
from pipeline.synthetic import raycast
from tests.ply_reader import read_ply


def plane_depth(camera: Intrinsics, normal: np.ndarray, offset: float) -> np.ndarray:
    """(H, W) z-depth of the plane n . X = offset seen through `camera` (0-based pixel centres)."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width].astype(np.float64)
    rays = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], -1)  # z = 1
    return offset / (rays @ normal)  # (H, W): the z at which each ray meets the plane


def fit_plane(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares plane of (N, 3) points: unit normal, offset, RMS distance of the points to it."""
    centre = points.mean(0)
    _, s, vt = np.linalg.svd(points - centre, full_matrices=False)
    normal = vt[-1]
    return normal, float(normal @ centre), float(s[-1] / np.sqrt(len(points)))


def test_a_tilted_plane_comes_out_planar_where_it_really_is():
    camera = NYU_KINECT.scaled(160, 120)
    normal = np.array([0.5, 0.4, -1.0])
    normal /= np.linalg.norm(normal)  # a wall tilted away to the right and down
    depth = plane_depth(camera, normal, -2.0)
    assert np.all(depth > 0) and depth.max() / depth.min() > 2  # really tilted: depth varies a lot
    points, valid = back_project(depth.astype(np.float32), camera)
    assert valid.all() and points.shape == (120 * 160, 3) and points.dtype == np.float32
    n, d, rms = fit_plane(points.astype(np.float64))
    sign = np.sign(n @ normal)
    assert rms < 1e-5  # metres: float32 rounding only
    np.testing.assert_allclose(sign * n, normal, atol=1e-5)
    assert sign * d == pytest.approx(-2.0, abs=1e-5)
    np.testing.assert_allclose(points[:, 2], depth.ravel(), rtol=1e-6)  # z is the depth itself (z-depth, not range)


def test_the_checks_can_fail():
    """Misread depth bends the plane; wrong intrinsics tilt it.

    Range read as z-depth bends the plane (planarity fails); a wrong principal point keeps
    it planar (x' is linear in x and z) but tilts it (the normal check fails).
    """
    camera = NYU_KINECT.scaled(160, 120)
    normal = np.array([0.0, 0.6, -0.8])
    depth = plane_depth(camera, normal, -2.0)
    v, u = np.mgrid[0:120, 0:160]
    ray_norm = np.sqrt(((u - camera.cx) / camera.fx) ** 2 + ((v - camera.cy) / camera.fy) ** 2 + 1)
    assert fit_plane(back_project(depth * ray_norm, camera)[0].astype(np.float64))[2] > 1e-3
    shifted = Intrinsics(camera.fx, camera.fy, camera.cx, camera.cy + 20, camera.width, camera.height)
    n, _, rms = fit_plane(back_project(depth, shifted)[0].astype(np.float64))
    assert rms < 1e-5 and abs(n @ normal) < 0.999


def test_invalid_depth_gives_no_point():
    camera = NYU_KINECT.scaled(4, 3)
    depth = np.full((3, 4), 2.0, dtype=np.float32)
    depth[0, 0], depth[1, 2], depth[2, 3] = 0.0, np.nan, np.inf
    points, valid = back_project(depth, camera)
    assert valid.sum() == 9 and len(points) == 9 and not valid[0, 0] and not valid[1, 2] and not valid[2, 3]
    assert np.isfinite(points).all()
    with pytest.raises(ValueError, match="intrinsics are for 3x4"):
        back_project(np.ones((4, 4)), camera)


def test_ply_parses_back_with_count_coordinates_and_colours(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(257, 3)).astype(np.float32)
    colours = rng.integers(0, 256, (257, 3), dtype=np.uint8)
    write_ply(tmp_path / "c.ply", points, colours)
    header, v = read_ply(tmp_path / "c.ply")
    assert "element vertex 257" in header
    names = [line.split()[-1] for line in header if line.startswith("property")]
    assert names == ["x", "y", "z", "red", "green", "blue"]
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), points)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), colours)
    assert [p.name for p in tmp_path.iterdir()] == ["c.ply"]  # written through a temporary, renamed
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
    assert len(read_ply(tmp_path / "empty.ply")[1]) == 0


def test_kinect_constants_are_the_renderers_and_scale_on_pixel_areas():
    assert (raycast.FX, raycast.FY, raycast.CX, raycast.CY) == (518.8579, 519.4696, 325.5824, 253.7362)
    half = NYU_KINECT.scaled(320, 240)
    assert (half.fx, half.fy) == pytest.approx((NYU_KINECT.fx / 2, NYU_KINECT.fy / 2))
    # Pixel k covers [k - 0.5, k + 0.5): the full image's left edge (-0.5) stays the left edge.
    assert half.cx == pytest.approx((NYU_KINECT.cx + 0.5) / 2 - 0.5)
    assert NYU_KINECT.scaled(640, 480) == NYU_KINECT


@pytest.mark.parametrize("fit", ["pad", "crop"])
def test_framing_gives_back_the_kinect_geometry_of_a_cut_or_widened_frame(fit):
    """A cut or widened Kinect frame back-projects to exactly the Kinect frame's own 3-D points.

    Cut to 480x360, pad puts it back in a 480x640 frame; widened to 480x800 with empty
    bands, crop cuts it back.
    """
    normal = np.array([0.3, 0.2, -0.9]) / np.linalg.norm([0.3, 0.2, -0.9])
    full = plane_depth(NYU_KINECT, normal, -1.5)  # (480, 640)
    ref = back_project(full, NYU_KINECT)[0].reshape(480, 640, 3)
    if fit == "pad":
        image, want = full[:, 140:500], ref[:, 140:500]  # the centre 360 columns
    else:
        image, want = np.pad(full, ((0, 0), (80, 80)), constant_values=np.nan), ref
    frame = framing(image.shape, (240, 320), fit)
    assert frame.frame_hw == (480, 640) and frame.left == (140 if fit == "pad" else -80)
    got, _ = back_project(image, frame.intrinsics(NYU_KINECT))
    np.testing.assert_allclose(got, want.reshape(-1, 3), rtol=1e-6, atol=1e-6)
