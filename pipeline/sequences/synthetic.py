"""`sequences.source: synthetic`: hand-held camera paths through rooms of their own, rendered with exact poses.

A path is a smooth function of time (`Walk`): the camera moves at a constant 0.25-0.5 m/s
on a gently curving heading with a 1 cm step bob, pans at 18-30 deg/s and nods and rolls
by a degree or two, so its speed stays in 0.2-0.6 m/s and its angular speed in 10-40 deg/s,
a person walking slowly and looking around. It starts from a pose `sample_camera` accepts and
is redrawn until every frame sees nothing nearer than `MIN_DEPTH` (checked on a coarse
render, as `sample_camera` does) and stays in the room, clear of the furniture.

Frames are `render_frame`'s, so Kinect noise and holes are the single frames' own. Exposure
varies slowly (`AutoExposure`), like the Kinect's auto-exposure in TUM's sequences.
Depth is timestamped a few ms after the RGB (a pair the driver registered), one depth frame
is dropped, and ground truth is sampled at 100 Hz on its own clock, so every reader
exercises association as on TUM's files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.camera import NYU_KINECT
from pipeline.config import SyntheticSequencesParams
from pipeline.errors import PipelineError
from pipeline.synthetic.raycast import camera_to_world, render_frame, trace_depth
from pipeline.synthetic.scenes import MIN_DEPTH, sample_camera, sample_scene
from pipeline.synthetic.spec import CameraPose, SceneSpec

# pipeline.synthetic.dataset draws the depth data's rooms from streams 0-3 of its seed; these never collide.
_ROOM_STREAM, _WALK_STREAM = 100, 101
ROOM_ID_OFFSET = 100_000  # sequence rooms are named <type>_1000xx: never a depth-data room's name either
SPEED = (0.25, 0.5)  # m/s along the heading; the bob adds <= 0.05 m/s: within 0.2-0.6
PAN = (18.0, 30.0)  # deg/s; the nod and roll add or take <= 6 deg/s: within 10-40
GT_RATE = 100.0  # Hz: TUM's motion-capture rate
WALL_MARGIN = 0.3  # metres the camera keeps from walls, floor and ceiling
TRIES = 200
NEAR_STRIDE = 4  # the near check's coarse render: every 4th pixel of 480x640, 19,200 rays


@dataclass(frozen=True)
class Walk:
    """A smooth hand-held path: `pose(t)` for t seconds from its start."""

    start: tuple[float, float, float]
    heading: float  # radians, direction of travel in the floor plane (0 along +z, pi/2 along +x)
    turn: float  # rad/s: the heading's rate (a gently curving walk)
    speed: float  # m/s
    yaw: float  # radians at t = 0
    pan: float  # rad/s
    pitch: float  # radians, mean
    phases: tuple[float, float, float]  # of the bob, the nod and the roll

    def pose(self, t: float, noise_seed: int = 0) -> CameraPose:
        """The renderer's camera at time `t` (s)."""
        if abs(self.turn) > 1e-9:  # the integral of speed * (sin, cos)(heading + turn * t)
            a0, a1 = self.heading, self.heading + self.turn * t
            dx, dz = (
                self.speed * (math.cos(a0) - math.cos(a1)) / self.turn,
                self.speed * (math.sin(a1) - math.sin(a0)) / self.turn,
            )
        else:
            dx, dz = self.speed * t * math.sin(self.heading), self.speed * t * math.cos(self.heading)
        bob, nod, roll = self.phases
        x, y, z = self.start
        return CameraPose(
            position=(x + dx, y + 0.01 * math.sin(2 * math.pi * t / 1.2 + bob), z + dz),
            yaw=self.yaw + self.pan * t,
            pitch=self.pitch + math.radians(1.5) * math.sin(2 * math.pi * t / 2.5 + nod),
            roll=math.radians(1.0) * math.sin(2 * math.pi * t / 3.1 + roll),
            noise_seed=noise_seed,
        )


class AutoExposure:
    """The gain follows each frame's meter with a 0.5 s time constant (in log gain), as a camera's auto-exposure.

    Constant exposure would make brightness constancy exact, which no real Kinect gives; a
    per-frame exposure (the single frames') jumps when a lamp enters the view. The slow loop
    changes brightness by a few % between frames, as in TUM's sequences.
    """

    def __init__(self, fps: float, time_constant_s: float = 0.5) -> None:
        self.alpha = 1 - math.exp(-1 / (fps * time_constant_s))
        self.log_gain: float | None = None

    def __call__(self, meter: float) -> float:
        """The gain for a frame whose 99th-percentile radiance is `meter` (the renderer's `Exposure`)."""
        target = math.log(0.9 / meter)  # what a single frame's own exposure would be
        self.log_gain = target if self.log_gain is None else self.log_gain + self.alpha * (target - self.log_gain)
        return math.exp(self.log_gain)


def _rng(seed: int, stream: int, key: int) -> np.random.Generator:
    return np.random.default_rng([seed % 2**63, stream, key])


def sequence_room(seed: int, k: int) -> SceneSpec:
    """Sequence k's room (0-based): a pure function of the seed, from a stream the depth data never uses."""
    return sample_scene(_rng(seed, _ROOM_STREAM, k), ROOM_ID_OFFSET + k)


def _clear(scene: SceneSpec, camera: CameraPose) -> bool:
    """Inside the room with a margin, outside the furniture, and nothing nearer than MIN_DEPTH in view."""
    x, y, z = camera.position
    W, H, D = scene.size
    inside = (
        WALL_MARGIN < x < W - WALL_MARGIN and WALL_MARGIN < y < H - WALL_MARGIN and WALL_MARGIN < z < D - WALL_MARGIN
    )
    if not inside:
        return False
    m = 0.2
    if any(b.lo[0] - m < x < b.hi[0] + m and b.lo[1] - m < y < b.hi[1] + m and b.lo[2] - m < z < b.hi[2] + m
           for b in scene.boxes):  # fmt: skip
        return False
    return float(trace_depth(scene, camera, stride=NEAR_STRIDE).min()) >= MIN_DEPTH


def _draw_walk(rng: np.random.Generator, scene: SceneSpec) -> Walk:
    cam = sample_camera(rng, scene)
    return Walk(
        start=cam.position,
        heading=cam.yaw + rng.uniform(-1.0, 1.0),  # walking roughly where it looks: into the room
        turn=rng.uniform(-0.3, 0.3),
        speed=rng.uniform(*SPEED),
        yaw=cam.yaw,
        pan=math.radians(rng.uniform(*PAN)) * rng.choice([-1, 1]),
        pitch=cam.pitch,
        phases=tuple(rng.uniform(0, 2 * math.pi, 3)),
    )


def plan_walk(seed: int, k: int, scene: SceneSpec, times: np.ndarray) -> Walk:
    """A walk whose every frame at `times` (s from its start) is clear (see `_clear`).

    Raises:
        PipelineError: no such walk in `TRIES` draws (a sequence too long for its room).
    """
    rng = _rng(seed, _WALK_STREAM, k)
    for _ in range(TRIES):
        walk = _draw_walk(rng, scene)
        if all(_clear(scene, walk.pose(float(t))) for t in times):
            return walk
    raise PipelineError(
        f"sequences.synthetic: no clear {times[-1]:.1f} s walk in room {scene.name} after {TRIES} tries; "
        "lower sequences.synthetic.frames or raise sequences.synthetic.fps"
    )


@dataclass(frozen=True)
class Timing:
    """The three clocks of a sequence, in seconds since the Unix epoch, like TUM's."""

    rgb: np.ndarray  # (N,)
    depth: np.ndarray  # (N,) NaN where the depth frame is dropped
    groundtruth: np.ndarray  # (K,) at GT_RATE, covering the RGB frames with a margin


def timing(rng: np.random.Generator, frames: int, fps: float, k: int) -> Timing:
    """RGB at `fps`, depth 2-12 ms later with jitter and one frame dropped, ground truth at 100 Hz."""
    t0 = 1_700_000_000.0 + 1000.0 * k + rng.uniform(0, 1)
    rgb = t0 + np.arange(frames) / fps
    depth = rgb + rng.uniform(0.002, 0.012) + rng.uniform(-0.001, 0.001, frames)
    if frames >= 3:
        depth[rng.integers(1, frames - 1)] = np.nan  # never the first or last: the sequence keeps its span
    gt = np.arange(rgb[0] - 0.05 - rng.uniform(0, 1 / GT_RATE), rgb[-1] + 0.05, 1 / GT_RATE)
    return Timing(rgb, depth, gt)


@dataclass(frozen=True)
class Plan:
    """Everything sequence k is drawn from: its room, walk, clocks and per-frame sensor-noise seeds."""

    name: str
    scene: SceneSpec
    walk: Walk
    clock: Timing
    noise: np.ndarray  # (N,) render_frame noise seeds, one per RGB frame

    def camera(self, t: float, i: int = 0) -> CameraPose:
        """The renderer's camera at timestamp `t` (s since the epoch), with RGB frame i's noise seed."""
        return self.walk.pose(t - self.clock.rgb[0], int(self.noise[i]))


def plan_sequence(params: SyntheticSequencesParams, k: int) -> Plan:
    """Sequence k's (0-based) plan: a pure function of `params.seed`, `k`, the frame count and rate."""
    scene = sequence_room(params.seed, k)
    clock = timing(_rng(params.seed, _WALK_STREAM, 10_000 + k), params.frames, params.fps, k)
    walk = plan_walk(params.seed, k, scene, clock.rgb - clock.rgb[0])
    noise = _rng(params.seed, _WALK_STREAM, 20_000 + k).integers(1 << 30, size=params.frames)
    return Plan(f"synthetic_{k + 1:03d}_{scene.name}", scene, walk, clock, noise)


def render_sequence(params: SyntheticSequencesParams, plan: Plan) -> dict:
    """`write_sequence`'s arguments for a plan, its frames rendered lazily as they are written.

    Returns:
        {"intrinsics", "rgb", "depth", "groundtruth"}: rgb and depth iterate over (timestamp,
        image), groundtruth is a list of (timestamp, (4, 4) camera-to-world).
    """
    size = (params.height, params.width)
    rendered: list[np.ndarray | None] = []  # raw depth of each RGB frame, until depth.txt's pass writes it

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        exposure = AutoExposure(params.fps)
        for i, t in enumerate(plan.clock.rgb):
            rgb, _, raw = render_frame(plan.scene, plan.camera(t, i), size, exposure)
            rendered.append(raw)
            yield float(t), rgb

    def depths() -> Iterator[tuple[float, np.ndarray]]:
        for i, t in enumerate(plan.clock.depth):  # the RGB frames are written first, so each is rendered once
            raw, rendered[i] = rendered[i], None  # written once: free it (120 frames at 480x640 are 150 MB)
            if np.isfinite(t) and raw is not None:
                yield float(t), raw

    gt = [(float(t), camera_to_world(plan.camera(t))) for t in plan.clock.groundtruth]
    k = NYU_KINECT.scaled(params.width, params.height)
    return {"intrinsics": k, "rgb": frames(), "depth": depths(), "groundtruth": gt}
