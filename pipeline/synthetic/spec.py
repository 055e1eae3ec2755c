"""The data types of a synthetic scene: a room (`SceneSpec`) and a camera in it (`CameraPose`).

World frame: metres, x to the right, y up, z into the room; the room is the box
[0, W] x [0, H] x [0, D] with the floor at y = 0. Walls are numbered 0..3 as
z = 0, z = D, x = 0, x = W; a wall's surface id in `raycast` is 2 + its number.

Kept apart from `scenes` (which samples them) and `raycast` (which renders them) so
that imports point one way: textures -> furniture -> spec -> raycast -> scenes -> dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.synthetic.furniture import Box
from pipeline.synthetic.textures import Material

SCENE_TYPES = ("bedroom", "kitchen", "living_room", "bathroom", "dining_room", "office")


@dataclass(frozen=True)
class Decal:
    """A rectangle painted on a room surface (door, window, picture, rug, lamp).

    `surface` is the render surface id (0 floor, 1 ceiling, 2..5 walls) and `rect`
    (u0, v0, u1, v1) is in that surface's (u, v) coordinates: floor/ceiling (x, z),
    walls z = const (x, y), walls x = const (z, y).
    """

    surface: int
    rect: tuple[float, float, float, float]
    material: Material
    emission: float = 0.0  # added radiance: windows and lamps glow
    no_ir: bool = False  # glass and mirrors return no Kinect depth


@dataclass(frozen=True)
class SceneSpec:
    """One room: geometry, materials and lighting (camera-independent)."""

    name: str  # e.g. "bedroom_0003", NYU style
    scene_type: str
    size: tuple[float, float, float]  # (W, H, D) metres
    floor: Material
    wall: Material
    ceiling: Material
    boxes: tuple[Box, ...]
    decals: tuple[Decal, ...]
    light: tuple[float, float, float]  # point light position
    light_colour: tuple[float, float, float]
    ambient: float
    texture_seed: int


@dataclass(frozen=True)
class CameraPose:
    """A Kinect pose in the room. Pitch > 0 looks down; yaw 0 looks along +z."""

    position: tuple[float, float, float]
    yaw: float  # radians
    pitch: float  # radians
    roll: float  # radians
    noise_seed: int  # sensor noise and Kinect holes of this frame
