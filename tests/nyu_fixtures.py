"""Tiny raw NYUDv2 files (`nyu_depth_v2_labeled.mat` + `splits.mat`) at the real 480x640 size.

Content is asymmetric so orientation bugs show: a white 16x16 marker in the top-left
corner, red rising left->right, green rising top->bottom, depth rising left->right with
a near box (a sharp depth edge). Frames come in pairs sharing a scene, so scene-disjoint
splits are testable. Every frame is a pure function of (i, seed): tests can rebuild the
expected frame with `tiny_frame`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.matlab import HEIGHT, WIDTH, Frame, write_labeled_mat, write_splits_mat

SCENE_TYPES = ("bedroom", "kitchen", "office")
MARKER = 16  # side of the white top-left marker, pixels


def tiny_frame(i: int, seed: int = 0) -> Frame:
    """Frame i (0-based) of the tiny file."""
    rng = np.random.default_rng([seed, i])
    rows = np.arange(HEIGHT)[:, None]
    cols = np.arange(WIDTH)[None, :]
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[..., 0] = cols * 255 // (WIDTH - 1)  # red: left dark, right bright
    rgb[..., 1] = rows * 255 // (HEIGHT - 1)  # green: top dark, bottom bright
    rgb[..., 2] = rng.integers(0, 256, (HEIGHT, WIDTH))  # blue: per-frame noise
    rgb[:MARKER, :MARKER] = 255
    depth = np.broadcast_to(1.0 + 4.0 * cols / (WIDTH - 1) + 0.05 * i, (HEIGHT, WIDTH)).astype(np.float32)
    depth = depth.copy()
    y0, x0 = 100 + 10 * i, 200
    depth[y0 : y0 + 120, x0 : x0 + 160] = 0.8  # a near box: a sharp occlusion edge
    raw = depth.copy()
    raw[((rows // 8 + cols // 8) % 5 == 0) | (rng.random((HEIGHT, WIDTH)) < 0.05)] = 0.0  # Kinect-like holes
    pair = i // 2  # frames 2k and 2k+1 share a scene
    stype = SCENE_TYPES[pair % len(SCENE_TYPES)]
    return Frame(rgb, depth, raw, f"{stype}_{pair + 1:04d}", stype)


def tiny_splits(n: int, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1-based (train, test) indices, each ascending like NYU's own splits.mat."""
    rng = np.random.default_rng(seed)
    test = np.sort(rng.permutation(np.arange(1, n + 1))[:n_test])
    train = np.setdiff1d(np.arange(1, n + 1), test)
    return train, test


def make_tiny_nyu(dir: str | Path, n: int = 12, n_test: int = 5, seed: int = 0) -> tuple[Path, Path]:
    """Writes `nyu_depth_v2_labeled.mat` and `splits.mat` under `dir`.

    Returns:
        (labeled path, splits path).
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    labeled, splits = dir / "nyu_depth_v2_labeled.mat", dir / "splits.mat"
    # gzip=1: the tiny files are rewritten in many tests; level 1 keeps that fast.
    write_labeled_mat(labeled, (tiny_frame(i, seed) for i in range(n)), n, gzip=1)
    write_splits_mat(splits, *tiny_splits(n, n_test, seed))
    return labeled, splits
