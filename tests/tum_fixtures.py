"""Tiny sequences in TUM RGB-D's exact layout, written here independently of `pipeline.sequences.layout`.

As TUM ships them: comment headers, RGB at 30 Hz, depth on its own clock a few ms later
with one frame missing, ground truth at 100 Hz starting before and ending after the images
(quaternions to 4 decimals, as TUM's files), accelerometer.txt, and no calibration.txt.
The camera moves along a known path (`pose_at`), so a reader's poses can be checked.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

T0 = 1305031102.175304  # fr1/desk's first RGB timestamp
SIZE = (12, 16)  # (h, w): tiny images, TUM's 4:3


@dataclass(frozen=True)
class TumFixture:
    folder: Path
    rgb_times: np.ndarray  # (N,)
    depth_times: np.ndarray  # (N - 1,): one frame has no depth
    missing: int  # the RGB index whose depth frame is missing
    gt_times: np.ndarray  # (K,) at 100 Hz


def pose_at(t: float) -> np.ndarray:
    """The fixture camera's (4, 4) camera-to-world at time t: 0.3 m/s along x, 20 deg/s about y."""
    s = t - T0
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("y", 20 * s, degrees=True).as_matrix()
    T[:3, 3] = (0.3 * s + 1.0, -0.1 * s, 2.0)
    return T


def depth_of(i: int) -> np.ndarray:
    """Frame i's (h, w) uint16 depth: a ramp in 1/5000 m, with a few holes (0)."""
    d = (5000 + 100 * i + np.arange(SIZE[0] * SIZE[1]).reshape(SIZE)).astype(np.uint16)
    d[0, :3] = 0
    return d


def make_tum(root: Path, name: str = "rgbd_dataset_freiburg1_desk", n: int = 10, missing: int = 4) -> TumFixture:
    """Writes sequence `root/name` with `n` RGB frames; RGB frame `missing` has no depth frame."""
    folder = root / name
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    rgb_t = T0 + np.arange(n) / 30.0 + np.array([0.0003 * (i % 3) for i in range(n)])  # jitter, as TUM's
    depth_t = rgb_t + 0.0087
    rgb_lines = ["# color images", f"# file: '{name}.bag'", "# timestamp filename"]
    depth_lines = ["# depth maps", f"# file: '{name}.bag'", "# timestamp filename"]
    kept = []
    for i, (tr, td) in enumerate(zip(rgb_t, depth_t, strict=True)):
        rgb = np.full((*SIZE, 3), 20 * i, np.uint8)
        Image.fromarray(rgb).save(folder / f"rgb/{tr:.6f}.png")
        rgb_lines.append(f"{tr:.6f} rgb/{tr:.6f}.png")
        if i != missing:
            Image.fromarray(depth_of(i)).save(folder / f"depth/{td:.6f}.png")
            depth_lines.append(f"{td:.6f} depth/{td:.6f}.png")
            kept.append(td)
    gt_t = np.arange(rgb_t[0] - 0.0437, rgb_t[-1] + 0.05, 0.01)
    gt_lines = ["# ground truth trajectory", f"# file: '{name}.bag'", "# timestamp tx ty tz qx qy qz qw"]
    for t in gt_t:
        T = pose_at(t)
        q = Rotation.from_matrix(T[:3, :3]).as_quat()
        gt_lines.append(f"{t:.4f} " + " ".join(f"{v:.4f}" for v in (*T[:3, 3], *q)))
    for fname, lines in (("rgb.txt", rgb_lines), ("depth.txt", depth_lines), ("groundtruth.txt", gt_lines)):
        (folder / fname).write_text("\n".join(lines) + "\n")
    (folder / "accelerometer.txt").write_text("# accelerometer data\n# timestamp ax ay az\n1305031102.1 0 -9.8 0\n")
    return TumFixture(folder, rgb_t, np.array(kept), missing, gt_t)


def tgz_of(folder: Path) -> bytes:
    """The folder as TUM's archive: a gzipped tar holding `<folder name>/...`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return buf.getvalue()
