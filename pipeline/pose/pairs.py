"""Synthetic frame pairs with known motion, for the pose tests and benchmarks.

Each pair is two renders of one synthetic room (`pipeline.synthetic`): the target from a
sampled camera, the source from that camera moved by `translation_m` in a random
direction and turned by `rotation_deg` about a random axis (yaw, pitch and roll mixed),
with its own sensor noise. Ground truth T_j_from_i = inv(P_j) @ P_i with P the
camera-to-world poses (`camera_to_world`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.synthetic.raycast import camera_to_world, render_frame
from pipeline.synthetic.scenes import sample_camera, sample_scene


@dataclass(frozen=True)
class PairBatch:
    """B pairs as tensors: rgb in [0, 1] (B, 3, H, W), depths (B, 1, H, W) metres, T_j_from_i (B, 4, 4) float32."""

    rgb_tgt: torch.Tensor
    rgb_src: torch.Tensor
    depth_tgt: torch.Tensor  # the sensor's: 0 at Kinect holes
    depth_tgt_filled: torch.Tensor  # the renderer's exact z-depth
    T: torch.Tensor
    depth_src: torch.Tensor  # the source's sensor depth (the geometric term's)


def _moved(rng: np.random.Generator, camera, translation_m: float, rotation_deg: float):
    """The camera moved by translation_m along a random direction and turned by rotation_deg in total."""
    d = rng.normal(size=3)
    d *= translation_m / np.linalg.norm(d)
    a = rng.normal(size=3)
    a *= np.deg2rad(rotation_deg) / np.linalg.norm(a)  # (yaw, pitch, roll) increments
    return dataclasses.replace(
        camera,
        position=tuple(float(p) for p in np.add(camera.position, d)),
        yaw=camera.yaw + float(a[0]),
        pitch=camera.pitch + float(a[1]),
        roll=camera.roll + float(a[2]),
        noise_seed=camera.noise_seed + 1,
    )


def synthetic_pairs(
    seeds: list[int], size: tuple[int, int] = (96, 128), translation_m: float = 0.03, rotation_deg: float = 2.0
) -> PairBatch:
    """Renders one pair per seed (room `seed`, camera and motion drawn from `seed`) at `size` (h, w)."""
    out: list[list[np.ndarray]] = [[], [], [], [], [], []]
    for seed in seeds:
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, seed)
        cam = sample_camera(rng, scene)
        cam2 = _moved(rng, cam, translation_m, rotation_deg)
        tgt, src = render_frame(scene, cam, size), render_frame(scene, cam2, size)
        motion = np.linalg.inv(camera_to_world(cam2)) @ camera_to_world(cam)
        for lst, a in zip(out, (tgt[0], src[0], tgt[2], tgt[1], motion, src[2]), strict=True):
            lst.append(a)
    rgb_t, rgb_s, raw, depth, T, raw_s = (torch.from_numpy(np.stack(a)) for a in out)
    return PairBatch(
        rgb_tgt=rgb_t.permute(0, 3, 1, 2).float() / 255,  # (B, 3, H, W)
        rgb_src=rgb_s.permute(0, 3, 1, 2).float() / 255,
        depth_tgt=raw[:, None].float(),  # (B, 1, H, W)
        depth_tgt_filled=depth[:, None].float(),
        T=T.float(),
        depth_src=raw_s[:, None].float(),
    )
