"""Vectorised ray casting of a `SceneSpec`: RGB, z-depth and Kinect-like raw depth.

One ray per pixel through NYU's Kinect RGB intrinsics. Each ray's direction has
camera-frame z = 1, so the hit distance `t` along it *is* the z-depth NYU stores
(not the Euclidean ray length). Rooms are convex boxes seen from inside (the exit
face is the hit); furniture boxes use the slab test, one box at a time over all rays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.camera import NYU_KINECT
from pipeline.data.matlab import HEIGHT, WIDTH
from pipeline.synthetic.spec import CameraPose, SceneSpec
from pipeline.synthetic.textures import albedo

# NYUDv2 toolbox camera_params.m: RGB intrinsics of the Kinect (declared once, in pipeline.camera).
FX, FY, CX, CY = NYU_KINECT.fx, NYU_KINECT.fy, NYU_KINECT.cx, NYU_KINECT.cy
MAX_DEPTH = 10.0  # metres: NYU's depth maps are capped here
KINECT_MIN = 0.5  # metres: nearer than this the Kinect returns nothing
KINECT_BASELINE_PX = FX * 0.075  # focal length x the 7.5 cm projector-camera baseline
_ROOM_SURF = np.array([[4, 5], [0, 1], [2, 3]])  # [exit axis, direction > 0] -> surface id
_SURF_AXIS = (1, 1, 2, 2, 0, 0)  # room surface id -> its normal axis
_UV_AXES = ((2, 1), (0, 2), (0, 1))  # normal axis -> the (u, v) world axes of that face
# A camera's exposure control: given a frame's 99th-percentile radiance (its meter reading), the gain
# to expose it with. None = each frame on its own meter (single frames; sequences may vary it slowly).
Exposure = Callable[[float], float]


@dataclass
class Hits:
    """First hit of N rays: distance (= z-depth), surface id (0-5 room, 6+k box k), face normal."""

    t: np.ndarray  # (N,) float32
    surf: np.ndarray  # (N,) int32
    normal: np.ndarray  # (N, 3) float32, unit, axis-aligned, facing the ray


def rotation(camera: CameraPose) -> np.ndarray:
    """Camera (x right, y up, z forward) to world: roll, then pitch down, then yaw."""
    cr, sr = np.cos(camera.roll), np.sin(camera.roll)
    cp, sp = np.cos(camera.pitch), np.sin(camera.pitch)
    cy, sy = np.cos(camera.yaw), np.sin(camera.yaw)
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])  # pitch > 0 turns forward towards -y
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return Ry @ Rx @ Rz


# The renderer's frames (camera: x right, y up, z forward; world: x right, y up, z into the
# room) are both left-handed; a rigid motion needs right-handed ones. Negating y in both
# gives the OpenCV/TUM camera (x right, y down, z forward) and a right-handed world.
_FLIP_Y = np.diag([1.0, -1.0, 1.0])


def camera_to_world(camera: CameraPose) -> np.ndarray:
    """(4, 4) float64 camera-to-world of the optical centre, in the OpenCV/TUM convention (a proper rotation).

    Camera frame: x right, y down, z forward, so pixel (u, v) of the intrinsics sees the
    ray ((u - cx) / fx, (v - cy) / fy, 1). World frame: the room's, with y pointing down
    (the floor at y = 0, the ceiling at y = -H), so that the pose is a rigid motion; a
    renderer world point (x, y, z) is (x, -y, z) here. This is the pose TUM RGB-D's
    `groundtruth.txt` stores and the one every pose estimate is scored in.
    """
    T = np.eye(4)
    T[:3, :3] = _FLIP_Y @ rotation(camera) @ _FLIP_Y
    T[:3, 3] = _FLIP_Y @ np.asarray(camera.position, dtype=np.float64)
    return T


def camera_rays(camera: CameraPose, stride: int = 1, size: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """World ray directions (h/stride, w/stride, 3) with camera-frame z = 1, pixel centres on the grid.

    Args:
        camera: the pose.
        stride: sample every `stride`-th pixel of the frame (quick low-resolution checks).
        size: the frame's (h, w): the Kinect's field of view at another resolution (its
            intrinsics scaled, `Intrinsics.scaled`), so a 120x160 frame sees what a 480x640 one does.
    """
    h, w = size
    k = NYU_KINECT.scaled(w, h)
    v, u = np.mgrid[0:h:stride, 0:w:stride].astype(np.float32)
    d = np.stack([(u - k.cx) / k.fx, -(v - k.cy) / k.fy, np.ones_like(u)], axis=-1)  # image y is down
    return (d @ rotation(camera).T.astype(np.float32)).astype(np.float32)


def _slab(lo: tuple, hi: tuple, origin: np.ndarray, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slab test of rays against one box: entry and exit distances (N,), per-axis entry distances (3, N).

    Arrays are axis-major (3, N): numpy reduces a short trailing axis slowly, so the
    max/min over the three axes are two elementwise ops instead.
    """
    t1 = (np.asarray(lo, np.float32)[:, None] - origin) * inv  # (3, N)
    t2 = (np.asarray(hi, np.float32)[:, None] - origin) * inv
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    return np.maximum(np.maximum(near[0], near[1]), near[2]), np.minimum(np.minimum(far[0], far[1]), far[2]), near


def _inverse(dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-major directions (3, N) with zeros nudged to 1e-9 (no 0/0 in the slab test), and 1/them."""
    safe = np.where(np.abs(dirs.T) < 1e-9, np.float32(1e-9), dirs.T).astype(np.float32)
    return safe, 1.0 / safe


def _in_cone(lo: tuple | np.ndarray, hi: tuple | np.ndarray, origin: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Indices of the unit rays (3, N) inside the cone from `origin` around the box's bounding sphere.

    A cheap cull (one dot product per ray) before the slab test: boxes cover a small part of the view.
    """
    centre = (np.asarray(lo) + np.asarray(hi)) / 2 - origin
    radius = np.linalg.norm(np.asarray(hi) - np.asarray(lo)) / 2
    dist = np.linalg.norm(centre)
    if dist <= radius * 1.001:
        return np.arange(unit.shape[1])
    cos_half = np.sqrt(1 - (radius / dist) ** 2)
    a = centre / dist
    cos = a[0] * unit[0] + a[1] * unit[1] + a[2] * unit[2]  # not `@`: BLAS threads fight other processes
    return np.nonzero(cos >= cos_half - 1e-4)[0]


def trace(scene: SceneSpec, origin: np.ndarray, dirs: np.ndarray) -> Hits:
    """First hits of rays (N, 3) from one origin inside the room."""
    n = len(dirs)
    safe, inv = _inverse(dirs)  # (3, N)
    o = np.asarray(origin, np.float32)[:, None]
    bound = np.where(safe > 0, np.asarray(scene.size, np.float32)[:, None], np.float32(0))
    t_axes = (bound - o) * inv  # (3, N) distance to the room face ahead on each axis
    axis = np.where(t_axes[0] < t_axes[1], 0, 1)
    axis = np.where(t_axes[2] < np.minimum(t_axes[0], t_axes[1]), 2, axis)
    cols = np.arange(n)
    t = t_axes[axis, cols]
    ahead = safe[axis, cols] > 0
    surf = _ROOM_SURF[axis, ahead.astype(int)].astype(np.int32)
    normal = np.zeros((n, 3), np.float32)
    normal[cols, axis] = np.where(ahead, -1.0, 1.0)
    unit = safe / np.sqrt((safe * safe).sum(axis=0))  # (3, N)
    for k, b in enumerate(scene.boxes):
        cand = _in_cone(b.lo, b.hi, o[:, 0], unit)
        t_in, t_out, near = _slab(b.lo, b.hi, o, inv[:, cand])
        hit = (t_in < t_out) & (t_in > 0) & (t_in < t[cand])
        idx, near = cand[hit], near[:, hit]
        if len(idx) == 0:
            continue
        ax = near.argmax(axis=0)
        t[idx], surf[idx] = t_in[hit], 6 + k
        normal[idx] = 0
        normal[idx, ax] = -np.sign(safe[ax, idx])
    return Hits(t.astype(np.float32), surf, normal)


def trace_depth(scene: SceneSpec, camera: CameraPose, stride: int = 1) -> np.ndarray:
    """Z-depth (H/stride, W/stride) in metres, uncapped: geometry only, no shading."""
    dirs = camera_rays(camera, stride)
    hits = trace(scene, np.asarray(camera.position, np.float32), dirs.reshape(-1, 3))
    return hits.t.reshape(dirs.shape[:2])


def _shadowed(scene: SceneSpec, points: np.ndarray) -> np.ndarray:
    """(N,) True where a furniture box blocks the segment from a point (N, 3) to the light."""
    light = np.asarray(scene.light, np.float32)
    seg = light - points  # (N, 3): the segment as a ray, blocked for t in (0, 1)
    _, inv = _inverse(seg)  # (3, N)
    unit = np.ascontiguousarray(-seg.T / np.linalg.norm(seg, axis=1))  # (3, N) seen from the light, for culling
    p = np.ascontiguousarray(points.T)  # (3, N)
    out = np.zeros(len(points), bool)
    for b in scene.boxes:
        cand = _in_cone(b.lo, b.hi, light, unit)
        t_in, t_out, _ = _slab(b.lo, b.hi, p[:, cand], inv[:, cand])
        out[cand] |= (t_in < t_out) & (t_out > 1e-4) & (t_in < 1.0)
    return out


def _face_albedo(scene: SceneSpec, hits: Hits, points: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) of every hit from its surface's material, in face-local metres."""
    out = np.zeros((len(points), 3), np.float32)
    W, H, D = scene.size
    room = (scene.floor, scene.ceiling, scene.wall, scene.wall, scene.wall, scene.wall)
    for s in np.unique(hits.surf):
        idx = np.nonzero(hits.surf == s)[0]
        seed = scene.texture_seed + int(s)
        if s < 6:
            ua, va = _UV_AXES[_SURF_AXIS[s]]
            ext = (W, H, D)
            out[idx] = albedo(room[s], points[idx, ua], points[idx, va], ext[ua], ext[va], seed)
            continue
        box = scene.boxes[s - 6]
        lo, size = np.asarray(box.lo, np.float32), np.asarray(box.hi, np.float32) - np.asarray(box.lo, np.float32)
        front_axis = 0 if size[0] < size[2] else 2  # furniture faces the room across its thin side
        axis = np.abs(hits.normal[idx]).argmax(axis=1)
        for a in range(3):
            sel = idx[axis == a]
            ua, va = _UV_AXES[a]
            u, v = points[sel, ua] - lo[ua], points[sel, va] - lo[va]
            out[sel] = albedo(box.material, u, v, size[ua], size[va], seed, front=a == front_axis)
    return out


def _decals(scene: SceneSpec, hits: Hits, points: np.ndarray, alb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paints decals into `alb` in place; returns per-hit emission (N,) and no-IR mask (N,)."""
    emission = np.zeros(len(points), np.float32)
    no_ir = np.zeros(len(points), bool)
    for i, d in enumerate(scene.decals):
        ua, va = _UV_AXES[_SURF_AXIS[d.surface]]
        u0, v0, u1, v1 = d.rect
        idx = np.nonzero(hits.surf == d.surface)[0]
        u, v = points[idx, ua] - u0, points[idx, va] - v0
        inside = (u >= 0) & (u <= u1 - u0) & (v >= 0) & (v <= v1 - v0)
        idx, u, v = idx[inside], u[inside], v[inside]
        alb[idx] = albedo(d.material, u, v, u1 - u0, v1 - v0, scene.texture_seed + 100 + i)
        emission[idx] = d.emission
        no_ir[idx] = d.no_ir
    return emission, no_ir


def _occlusion(scene: SceneSpec, hits: Hits, points: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """(N,) share of ambient light reaching each point: less in room corners and beside furniture.

    A cheap analytic stand-in for ambient occlusion: darkening falls off exponentially
    with the distance to the nearest other room face and to the nearest other box.
    """
    p = np.ascontiguousarray(points.T)  # (3, N)
    size = np.asarray(scene.size, np.float32)[:, None]
    gap = np.minimum(p, size - p)  # (3, N) distance to the nearer room face on each axis
    own = np.abs(hits.normal.T) > 0.5  # (3, N) the axis of the face a point lies on
    gap = np.where(own & (hits.surf < 6), np.inf, gap)  # a room face does not occlude itself
    occ = 1 - 0.35 * np.exp(-np.minimum(np.minimum(gap[0], gap[1]), gap[2]) / 0.25)
    view = p - origin[:, None]
    unit = view / np.sqrt((view * view).sum(axis=0))  # (3, N) for culling, as in `trace`
    for k, b in enumerate(scene.boxes):
        lo, hi = np.asarray(b.lo, np.float32), np.asarray(b.hi, np.float32)
        idx = _in_cone(lo - 0.4, hi + 0.4, origin, unit)  # beyond 0.4 m the darkening is < 1.5%
        idx = idx[hits.surf[idx] != 6 + k]
        near = p[:, idx]  # (3, n)
        g = np.maximum(np.maximum(lo[:, None] - near, near - hi[:, None]), 0)  # (3, n) gap to the box
        occ[idx] *= 1 - 0.4 * np.exp(-np.sqrt((g * g).sum(axis=0)) / 0.12)
    return occ


def _radiance(
    scene: SceneSpec, hits: Hits, points: np.ndarray, origin: np.ndarray, alb: np.ndarray, emission: np.ndarray
) -> np.ndarray:
    """Lambertian shading: ambient + point light with 1/(1 + (r/r0)^2) fall-off and cast shadows."""
    to_light = np.asarray(scene.light, np.float32) - points
    dist = np.linalg.norm(to_light, axis=1)
    cos = np.clip((hits.normal * to_light).sum(axis=1) / dist, 0, None)
    lit = ~_shadowed(scene, points + 1e-3 * hits.normal)
    direct = 2.2 * cos * lit / (1 + (dist / 2.5) ** 2)
    ambient = scene.ambient * _occlusion(scene, hits, points, origin)  # inter-reflections reach ceilings too
    irradiance = (ambient + direct)[:, None] * np.asarray(scene.light_colour, np.float32)
    return alb * (irradiance + emission[:, None])


def kinect_holes(depth: np.ndarray, cos_inc: np.ndarray, no_ir: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W) True where a Kinect would return no depth.

    Grazing surfaces, glass, out-of-range depth, the projector's shadow beside near
    objects, a thin rim at depth edges, image borders and a few random blobs. Widths in
    pixels are the Kinect's at 480x640, scaled to the frame's size (the same draws at
    every size, so a small frame has the holes of the full one, coarser).
    """
    H, W = depth.shape
    sx, sy = W / WIDTH, H / HEIGHT
    holes = no_ir | (cos_inc < rng.uniform(0.08, 0.18)) | (depth > rng.uniform(8.0, 10.0)) | (depth < KINECT_MIN)
    # The projector sits beside the camera, so background just left of a near edge is unlit;
    # the shadow is baseline * f * (1/z_near - 1/z_far) pixels wide.
    shadow_px = sx * KINECT_BASELINE_PX * (1 / depth[:, 1:] - 1 / depth[:, :-1])  # (H, W-1), > 0 at far->near steps
    shadow_px = np.where(depth[:, :-1] > 1.05 * depth[:, 1:], np.minimum(shadow_px, 40 * sx), 0)
    for k in range(int(shadow_px.max(initial=0))):
        holes[:, : W - 1 - k] |= shadow_px[:, k:] > k
    # Depth change per full-resolution pixel: a slanted wall must not read as an edge in a small frame.
    rel = np.abs(np.gradient(depth, axis=0)) * sy + np.abs(np.gradient(depth, axis=1)) * sx
    edges = rel > 0.05 * depth  # 2 px wide (central differences): 8 full-resolution px at a quarter of the size
    holes |= ndimage.binary_dilation(edges) if min(sx, sy) > 0.5 else edges
    holes[:, : _scaled(rng.integers(10, 45), sx)] = True
    holes[:, W - _scaled(rng.integers(1, 12), sx) :] = True
    holes[: _scaled(rng.integers(0, 10), sy)] = True
    holes[H - _scaled(rng.integers(1, 10), sy) :] = True
    noise = rng.normal(size=(HEIGHT // 16, WIDTH // 16))  # the blobs' coarse grid, the same at every size
    blobs = ndimage.zoom(ndimage.gaussian_filter(noise, 1.0), (H / noise.shape[0], W / noise.shape[1]), order=1)
    holes |= blobs > rng.uniform(2.2, 3.0) * blobs.std()
    return holes


def _scaled(pixels: int | np.integer, scale: float) -> int:
    """A width of `pixels` at 480x640 in a frame `scale` times as wide; at least 1 where it was >= 1."""
    return max(round(int(pixels) * scale), min(int(pixels), 1))


def _tone_map(radiance: np.ndarray, rng: np.random.Generator, control: Exposure | None = None) -> np.ndarray:
    """Auto-exposure, display gamma, slight optical blur and sensor noise; (H, W, 3) uint8."""
    meter = max(float(np.percentile(radiance, 99)), 1e-6)
    exposure = 0.9 / meter if control is None else control(meter)
    img = np.clip(radiance * exposure, 0, 1) ** (1 / 1.4)
    img = ndimage.gaussian_filter(img, sigma=(0.6, 0.6, 0))
    img = img + rng.normal(0, 0.01, img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def _render(
    scene: SceneSpec,
    camera: CameraPose,
    stride: int,
    rng: np.random.Generator,
    size: tuple[int, int] = (HEIGHT, WIDTH),
    exposure: Exposure | None = None,
) -> tuple[np.ndarray, ...]:
    """Rgb (h, w, 3) uint8, capped depth (h, w), cosine of incidence (h, w) and no-IR mask (h, w)."""
    origin = np.asarray(camera.position, np.float32)
    grid = camera_rays(camera, stride, size)  # (h, w, 3)
    shape = grid.shape[:2]
    dirs = grid.reshape(-1, 3)  # (N, 3)
    hits = trace(scene, origin, dirs)
    points = origin + dirs * hits.t[:, None]  # (N, 3)
    alb = _face_albedo(scene, hits, points)
    emission, no_ir = _decals(scene, hits, points, alb)
    rgb = _tone_map(_radiance(scene, hits, points, origin, alb, emission).reshape(*shape, 3), rng, exposure)
    depth = np.minimum(hits.t, MAX_DEPTH).reshape(shape).astype(np.float32)
    cos_inc = np.abs((hits.normal * dirs).sum(axis=1)) / np.linalg.norm(dirs, axis=1)
    return rgb, depth, cos_inc.reshape(shape), no_ir.reshape(shape)


def render_rgbd(scene: SceneSpec, camera: CameraPose, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H/stride, W/stride, 3) uint8 and depth (H/stride, W/stride) float32 sampled every `stride` pixels.

    The same image as `render_frame` at lower resolution, for quick checks (no Kinect holes).
    """
    rgb, depth, _, _ = _render(scene, camera, stride, np.random.default_rng(camera.noise_seed))
    return rgb, depth


def render_frame(
    scene: SceneSpec, camera: CameraPose, size: tuple[int, int] = (HEIGHT, WIDTH), exposure: Exposure | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders one Kinect frame, 480x640 unless `size` says otherwise.

    Args:
        scene: the room.
        camera: the pose in it.
        size: the frame's (h, w): the Kinect's field of view at that resolution. A demo
            that trains at 128x160 renders there: 15x fewer rays than 480x640.
        exposure: the camera's exposure control (`Exposure`); None exposes the frame on its own
            99th percentile, as single frames always are.

    Returns:
        rgb (h, w, 3) uint8, depth (h, w) float32 z-depth in metres capped at MAX_DEPTH,
        raw_depth (h, w) float32 equal to depth except 0 at Kinect holes.
    """
    rng = np.random.default_rng(camera.noise_seed)
    rgb, depth, cos_inc, no_ir = _render(scene, camera, 1, rng, size, exposure)
    holes = kinect_holes(depth, cos_inc, no_ir, rng)
    return rgb, depth, np.where(holes, np.float32(0), depth).astype(np.float32)
