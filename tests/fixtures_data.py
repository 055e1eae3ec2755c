"""Tiny processed-data fixtures in the exact `data/processed/` layout, for train/evaluate/report tests.

Depth is learnable from the image (brightness falls with depth, a box occludes a
sloped floor), so a few training steps make measurable progress.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.data.datasets import DEPTH_SCALE, SplitWriter, decode_depth, encode_depth

SCENE_TYPES = ("bedroom", "kitchen", "office")


def make_frame(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (rgb uint8 (H,W,3), depth (H,W), raw_depth (H,W)) frame in metres."""
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    depth = np.broadcast_to(1.0 + 6.0 * (1.0 - rows) ** 2, (height, width)).copy()  # far at top, near at bottom
    y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
    depth[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.uniform(1.0, 3.0)  # a box in front
    tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    shade = (1.5 / depth)[..., None] * tint  # Lambertian-ish falloff: brighter when near
    rgb = np.clip(255 * shade + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)
    raw = depth.copy()
    raw[rng.random((height, width)) < 0.1] = 0.0  # Kinect-like holes
    return rgb, depth.astype(np.float32), raw.astype(np.float32)


def make_processed_dir(
    root: str | Path,
    n_train: int = 8,
    n_val: int = 4,
    n_test: int = 4,
    size: tuple[int, int] = (32, 48),
    test_size: tuple[int, int] = (48, 64),
    seed: int = 0,
) -> Path:
    """Writes train/val/test.h5 and summary.json under `root`; returns `root`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    index = 1
    means, sq = [], []
    for split, n in counts.items():
        h, w = test_size if split == "test" else size
        with SplitWriter(root / f"{split}.h5", n, h, w, split, "synthetic") as wr:
            for i in range(n):
                rgb, depth, raw = make_frame(rng, h, w)
                stype = SCENE_TYPES[i % len(SCENE_TYPES)]
                wr.write(i, rgb, depth, raw, index, f"{stype}_{split}_{i // 2:04d}", stype)
                if split == "train":
                    means.append(rgb.reshape(-1, 3).mean(0) / 255)
                    sq.append((rgb.reshape(-1, 3) / 255.0) ** 2)
                index += 1
    mean = np.mean(means, axis=0)
    std = np.sqrt(np.concatenate(sq).mean(0) - mean**2)
    summary = {
        "source": "synthetic",
        "height": size[0],
        "width": size[1],
        "counts": counts,
        "scene_types": {s: {t: n // len(SCENE_TYPES) for t in SCENE_TYPES} for s, n in counts.items()},
        "depth_min": 1.0,
        "depth_max": 7.0,
        "rgb_mean": [float(v) for v in mean],
        "rgb_std": [float(v) for v in std],
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    return root


def stored(depth: np.ndarray) -> np.ndarray:
    """Depth as the split files hold it: whole millimetres (uint16), read back as float32 metres."""
    return decode_depth(encode_depth(np.asarray(depth, np.float32), "test"), DEPTH_SCALE)
