"""Procedural indoor scenes for `data.source: synthetic`: room, furniture, wall decals, camera.

The types and the world frame are in `spec`. Everything is sampled from one numpy
Generator, so a scene is a pure function of it.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.synthetic.furniture import Box, sample_furniture
from pipeline.synthetic.raycast import trace_depth
from pipeline.synthetic.spec import SCENE_TYPES, CameraPose, Decal, SceneSpec
from pipeline.synthetic.textures import Material, jitter_colour

# Rough NYUDv2 frequencies (383 bedroom, 225 kitchen, 221 living room, 121 bathroom, ...).
_TYPE_WEIGHTS = np.array([0.30, 0.18, 0.18, 0.12, 0.11, 0.11])
# (width x, depth z) ranges in metres: big enough that a camera 0.3+ m from a wall
# sees nothing nearer than ~0.8 m, small enough that the far corner stays within 10 m.
_ROOM_SIZES = {
    "bedroom": ((3.0, 4.5), (3.5, 5.0)),
    "kitchen": ((2.8, 4.5), (3.5, 5.5)),
    "living_room": ((4.0, 7.0), (4.5, 9.0)),
    "bathroom": ((2.4, 3.2), (2.8, 3.8)),
    "dining_room": ((3.5, 5.0), (4.0, 6.0)),
    "office": ((4.0, 7.0), (4.5, 9.0)),
}
MIN_DEPTH = 0.8  # metres: a camera pose must see nothing nearer (Kinect's near limit is ~0.5)


def _room_materials(rng: np.random.Generator, scene_type: str) -> tuple[Material, Material, Material]:
    """Floor, wall and ceiling materials typical of the scene type."""
    walls = [(0.85, 0.80, 0.70), (0.75, 0.82, 0.88), (0.88, 0.86, 0.82), (0.80, 0.74, 0.80), (0.72, 0.80, 0.68)]
    wall = Material(jitter_colour(rng, walls[rng.integers(len(walls))], 0.04), "wall")
    wood = Material(jitter_colour(rng, (0.55, 0.38, 0.22)), "planks", float(rng.uniform(0.12, 0.22)))
    tiles = Material(jitter_colour(rng, (0.78, 0.76, 0.72), 0.08), "tiles", float(rng.uniform(0.25, 0.6)))
    carpet = Material(jitter_colour(rng, (0.45, 0.45, 0.48), 0.1), "carpet")
    floor = {
        "bedroom": (wood, carpet),
        "kitchen": (tiles,),
        "living_room": (wood, carpet, tiles),
        "bathroom": (tiles,),
        "dining_room": (wood, tiles),
        "office": (carpet, tiles),
    }[scene_type]
    if scene_type == "bathroom":  # tiled walls
        wall = Material(jitter_colour(rng, (0.85, 0.88, 0.90), 0.05), "tiles", float(rng.uniform(0.15, 0.3)))
    ceiling = Material(jitter_colour(rng, (0.92, 0.92, 0.90), 0.02), "paint")
    return floor[rng.integers(len(floor))], wall, ceiling


def _wall_geometry(size: tuple[float, float, float], wall: int) -> tuple[float, float]:
    """(length along the wall, room extent away from it) of wall 0..3."""
    W, _, D = size
    return (W, D) if wall < 2 else (D, W)


def _free_span(boxes: tuple[Box, ...], size: tuple, wall: int, width: float, rng: np.random.Generator) -> float | None:
    """A start position along `wall` for an opening of `width` not blocked by furniture near it."""
    length, _ = _wall_geometry(size, wall)
    W, _, D = size
    for _ in range(20):
        s = float(rng.uniform(0.2, max(0.21, length - width - 0.2)))
        blocked = False
        for b in boxes:
            near = (b.lo[2] < 0.4, b.hi[2] > D - 0.4, b.lo[0] < 0.4, b.hi[0] > W - 0.4)[wall]
            lo, hi = (b.lo[0], b.hi[0]) if wall < 2 else (b.lo[2], b.hi[2])
            blocked |= near and lo < s + width and hi > s
        if not blocked:
            return s
    return None


def _decals(rng: np.random.Generator, scene_type: str, size: tuple, boxes: tuple[Box, ...], light: tuple) -> list:
    """Door, windows, pictures, a rug and the ceiling lamp."""
    W, _, D = size
    out = []
    walls = rng.permutation(4)
    door_w = float(rng.uniform(0.8, 0.95))
    if (s := _free_span(boxes, size, int(walls[0]), door_w, rng)) is not None:
        door = Material(jitter_colour(rng, (0.60, 0.45, 0.30) if rng.random() < 0.5 else (0.9, 0.9, 0.88)), "door")
        out.append(Decal(2 + int(walls[0]), (s, 0.0, s + door_w, float(rng.uniform(2.0, 2.1))), door))
    for wall in walls[1 : 1 + rng.integers(0, 3)]:
        win_w = float(rng.uniform(0.8, 1.6))
        if (s := _free_span(boxes, size, int(wall), win_w, rng)) is not None:
            glass = Material(jitter_colour(rng, (0.80, 0.88, 0.95), 0.03), "window", float(rng.uniform(0.4, 0.8)))
            y0 = float(rng.uniform(0.9, 1.1))
            out.append(Decal(2 + int(wall), (s, y0, s + win_w, y0 + float(rng.uniform(1.0, 1.3))), glass, 0.6, True))
    for _ in range(rng.integers(0, 3)):
        wall = int(rng.integers(4))
        length, _ = _wall_geometry(size, wall)
        w, h = rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.7)
        u0, v0 = rng.uniform(0.2, length - w - 0.2), rng.uniform(1.3, 2.1 - h / 2)
        art = Material(jitter_colour(rng, rng.uniform(0.2, 0.8, 3), 0.0), "picture", float(rng.uniform(0.05, 0.2)))
        out.append(Decal(2 + wall, (u0, v0, u0 + w, v0 + h), art))
    if scene_type in ("bedroom", "living_room", "dining_room") and rng.random() < 0.6:
        w, d = rng.uniform(1.4, 2.4), rng.uniform(1.0, 1.8)
        x0, z0 = rng.uniform(0.5, max(0.51, W - w - 0.5)), rng.uniform(0.8, max(0.81, D - d - 0.5))
        rug = Material(jitter_colour(rng, rng.uniform(0.25, 0.75, 3), 0.0), "rug", float(rng.uniform(0.08, 0.2)))
        out.append(Decal(0, (x0, z0, x0 + w, z0 + d), rug))
    lamp = Material((1.0, 0.98, 0.92))
    out.append(Decal(1, (light[0] - 0.25, light[2] - 0.25, light[0] + 0.25, light[2] + 0.25), lamp, 1.5))
    return out


def sample_scene(rng: np.random.Generator, scene_id: int, scene_type: str | None = None) -> SceneSpec:
    """A random room of a random (NYU-frequency) or given type, named `<type>_<scene_id+1:04d>`.

    Args:
        rng: the only source of randomness.
        scene_id: 0-based scene number, for the name.
        scene_type: one of SCENE_TYPES, or None to draw one.
    """
    if scene_type is None:
        scene_type = SCENE_TYPES[rng.choice(len(SCENE_TYPES), p=_TYPE_WEIGHTS / _TYPE_WEIGHTS.sum())]
    if scene_type not in SCENE_TYPES:
        raise ValueError(f"unknown scene type {scene_type!r}; choose one of {', '.join(SCENE_TYPES)}")
    (w0, w1), (d0, d1) = _ROOM_SIZES[scene_type]
    size = (float(rng.uniform(w0, w1)), float(rng.uniform(2.4, 3.0)), float(rng.uniform(d0, d1)))
    floor, wall, ceiling = _room_materials(rng, scene_type)
    boxes = sample_furniture(rng, scene_type, size)
    light = (float(rng.uniform(0.3, 0.7) * size[0]), size[1] - 0.35, float(rng.uniform(0.3, 0.7) * size[2]))
    warm = rng.uniform(0.0, 0.12)
    return SceneSpec(
        name=f"{scene_type}_{scene_id + 1:04d}",
        scene_type=scene_type,
        size=size,
        floor=floor,
        wall=wall,
        ceiling=ceiling,
        boxes=boxes,
        decals=tuple(_decals(rng, scene_type, size, boxes, light)),
        light=light,
        light_colour=(1.0, 1.0 - warm / 2, 1.0 - warm),
        ambient=float(rng.uniform(0.25, 0.4)),
        texture_seed=int(rng.integers(1 << 30)),
    )


def _inside_furniture(scene: SceneSpec, x: float, z: float, margin: float = 0.3) -> bool:
    return any(b.lo[0] - margin < x < b.hi[0] + margin and b.lo[2] - margin < z < b.hi[2] + margin for b in scene.boxes)


def _candidate_pose(rng: np.random.Generator, scene: SceneSpec) -> CameraPose:
    """A pose near a random wall, aimed (loosely) at a random piece of furniture, as a person would."""
    W, _, D = scene.size
    wall = int(rng.integers(4))
    length, extent = _wall_geometry(scene.size, wall)
    s = rng.uniform(0.2, 0.8) * length
    off = rng.uniform(0.3, min(1.2, 0.3 * extent))
    x, z = [(s, off), (s, D - off), (off, s), (W - off, s)][wall]
    height = rng.triangular(1.0, 1.4, 1.8)  # hand-held Kinect: chest to eye height
    if scene.boxes and rng.random() < 0.5:  # half the views centre on a piece of furniture
        b = scene.boxes[rng.integers(len(scene.boxes))]
        tx, tz = (b.lo[0] + b.hi[0]) / 2, (b.lo[2] + b.hi[2]) / 2
    else:  # the others look across the room
        tx, tz = W / 2, D / 2
    yaw = math.atan2(tx - x, tz - z) + rng.normal(0, 0.2)  # yaw 0 looks along +z, pi/2 along +x
    pitch = np.deg2rad(rng.uniform(3.0, 10.0))  # NYU frames look a few degrees down
    return CameraPose(
        position=(float(x), float(height), float(z)),
        yaw=float(yaw),
        pitch=float(pitch),
        roll=float(np.deg2rad(rng.normal(0, 1.0))),
        noise_seed=int(rng.integers(1 << 30)),
    )


def sample_camera(rng: np.random.Generator, scene: SceneSpec, tries: int = 50) -> CameraPose:
    """A random camera pose that sees nothing nearer than MIN_DEPTH (checked on a coarse render).

    Falls back to the pose with the farthest nearest point if no try succeeds.
    """
    best, best_near = None, -1.0
    for _ in range(tries):
        pose = _candidate_pose(rng, scene)
        if _inside_furniture(scene, pose.position[0], pose.position[2]):
            continue
        near = float(trace_depth(scene, pose, stride=4).min())
        if near >= MIN_DEPTH:
            return pose
        if near > best_near:
            best, best_near = pose, near
    return best if best is not None else _candidate_pose(rng, scene)
