"""TUM RGB-D's sequence layout: written and read exactly as the benchmark ships it.

A sequence folder holds `rgb/` (8-bit PNG), `depth/` (16-bit PNG, value / 5000 = metres,
0 = no reading), `rgb.txt` and `depth.txt` (`timestamp filename`), `groundtruth.txt`
(`timestamp tx ty tz qx qy qz qw`: camera-to-world of the optical centre, camera x right,
y down, z forward) and `calibration.txt` (`fx fy cx cy`, see `calibration`). Lines starting
with `#` are comments. The reader pairs every RGB frame with the nearest depth frame and
its ground-truth pose by timestamp (`associate`), and every bad input is one
`PipelineError` line naming the file and line.

TUM's motion capture drops out now and then (fr1/rpy: 130 ms at 1305031244.81-.94): a
frame with no ground-truth sample within the tolerance is kept, without a pose
(`RGBDFrame.pose` None, `Sequence.groundtruth_mask` False). Odometry tracks it; scoring
skips it and every pair it ends, as TUM's tools drop the unmatched (docs/sequences.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from pipeline.camera import Intrinsics
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir
from pipeline.sequences.associate import associate, pose_at
from pipeline.sequences.calibration import read_intrinsics, write_calibration

log = logging.getLogger(__name__)

DEPTH_SCALE = 5000.0  # TUM: a depth PNG value of 5000 is 1 m
UNIT_QUATERNION_TOL = 1e-3  # TUM writes quaternions to 4 decimals: their norms are 1 to ~1e-4
_SIXTEEN_BIT = ("I;16", "I;16B", "I")  # how Pillow opens a 16-bit greyscale PNG (I in older versions)


@dataclass(frozen=True, eq=False)
class RGBDFrame:
    """One associated frame: the RGB image, its depth image (None: see `read_sequence`) and its pose."""

    rgb_time: float
    rgb_path: Path
    depth_time: float | None
    depth_path: Path | None
    pose: np.ndarray | None  # (4, 4) float64 camera-to-world at rgb_time (OpenCV/TUM camera); None: none near


@dataclass(frozen=True)
class Sequence:
    """A sequence read from its folder: intrinsics at its images' size and its frames in time order."""

    name: str
    folder: Path
    intrinsics: Intrinsics
    frames: tuple[RGBDFrame, ...]

    @property
    def groundtruth_mask(self) -> np.ndarray:
        """(N,) bool: the frames with a ground-truth pose within the tolerance (the ones scored)."""
        return np.array([f.pose is not None for f in self.frames], dtype=bool)

    @property
    def has_groundtruth(self) -> bool:
        """Whether any frame has a ground-truth pose (False for `require_groundtruth=False` reads without one)."""
        return bool(self.groundtruth_mask.any())

    @property
    def poses(self) -> np.ndarray:
        """(N, 4, 4) camera-to-world of every frame; a frame without one holds a placeholder.

        The placeholder is the pose of the nearest frame (by index, the earlier on a tie)
        that has one: finite and near, so plots and chaining stay sane, but never scored
        (`groundtruth_mask` is False there).

        Raises:
            PipelineError: no frame has a ground-truth pose.
        """
        mask = self.groundtruth_mask
        if not mask.any():
            raise PipelineError(f"{self.folder / 'groundtruth.txt'}: no frame has a ground-truth pose to score against")
        have = np.nonzero(mask)[0]
        nearest = have[np.abs(np.arange(len(mask))[:, None] - have[None]).argmin(axis=1)]  # (N,) indices
        return np.stack([self.frames[k].pose for k in nearest])  # every `nearest` frame has a pose

    @property
    def times(self) -> np.ndarray:
        """(N,) RGB timestamps in seconds."""
        return np.array([f.rgb_time for f in self.frames])


def pose_line(t: float, pose: np.ndarray) -> str:
    """`timestamp tx ty tz qx qy qz qw` of a (4, 4) camera-to-world (quaternion x, y, z, w as TUM)."""
    q = Rotation.from_matrix(pose[:3, :3]).as_quat()  # scipy's order is (x, y, z, w), TUM's too
    return " ".join(f"{v:.6f}" for v in (t, *pose[:3, 3], *q))


def _stamp(t: float) -> str:
    return f"{t:.6f}"


def write_sequence(
    folder: Path,
    intrinsics: Intrinsics,
    rgb: Iterable[tuple[float, np.ndarray]],
    depth: Iterable[tuple[float, np.ndarray]],
    groundtruth: Iterable[tuple[float, np.ndarray]],
) -> Path:
    """Writes one sequence folder atomically (built aside, swapped in complete).

    Args:
        folder: the sequence's folder (replaced if present).
        intrinsics: the images' intrinsics, written as calibration.txt.
        rgb: (timestamp s, (H, W, 3) uint8) frames.
        depth: (timestamp s, (H, W) float metres, 0 or non-finite = no reading) frames.
        groundtruth: (timestamp s, (4, 4) camera-to-world) samples.
    """
    with atomic_dir(folder) as tmp:
        (tmp / "rgb").mkdir()
        (tmp / "depth").mkdir()
        rgb_lines = ["# color images", "# timestamp filename"]
        for t, image in rgb:
            name = f"rgb/{_stamp(t)}.png"
            Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(tmp / name, compress_level=1)
            rgb_lines.append(f"{_stamp(t)} {name}")
        depth_lines = ["# depth maps", "# timestamp filename"]
        for t, metres in depth:
            name = f"depth/{_stamp(t)}.png"
            Image.fromarray(depth_to_png(metres)).save(tmp / name, compress_level=1)
            depth_lines.append(f"{_stamp(t)} {name}")
        gt_lines = ["# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"]
        gt_lines += [pose_line(t, pose) for t, pose in groundtruth]
        for fname, lines in (("rgb.txt", rgb_lines), ("depth.txt", depth_lines), ("groundtruth.txt", gt_lines)):
            (tmp / fname).write_text("\n".join(lines) + "\n")
        write_calibration(tmp, intrinsics)
    return Path(folder)


def depth_to_png(metres: np.ndarray) -> np.ndarray:
    """(H, W) metres -> (H, W) uint16 TUM depth (value / 5000 = metres; 0 = none, also for non-finite or <= 0)."""
    d = np.where(np.isfinite(metres) & (metres > 0), metres, 0.0)
    return np.clip(np.round(d * DEPTH_SCALE), 0, 65535).astype(np.uint16)


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def load_depth(path: Path) -> np.ndarray:
    """(H, W) float32 metres of a TUM depth PNG (0 = no reading).

    Raises:
        PipelineError: the PNG is not 16-bit.
    """
    with Image.open(path) as img:
        if img.mode not in _SIXTEEN_BIT:
            raise PipelineError(f"{path}: a {img.mode} image, not a 16-bit depth PNG (TUM: value / 5000 = metres)")
        return (np.asarray(img, dtype=np.float32) / DEPTH_SCALE).astype(np.float32)


def list_sequences(root: Path) -> list[Path]:
    """The sequence folders under `root` (those holding an rgb.txt), sorted by name; [] if there are none."""
    root = Path(root)
    return sorted(p for p in root.iterdir() if (p / "rgb.txt").is_file()) if root.is_dir() else []


def _entries(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-comment line; each must have `columns` fields and a numeric timestamp."""
    if not path.is_file():
        raise PipelineError(f"{path}: not found; a TUM-layout sequence needs rgb.txt, depth.txt and groundtruth.txt")
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            if len(fields) != columns:
                raise ValueError
            [float(v) for v in fields[: 1 if columns == 2 else columns]]
        except ValueError:
            want = "timestamp filename" if columns == 2 else "timestamp tx ty tz qx qy qz qw"
            raise PipelineError(f"{path} line {number}: expected '{want}', got {line.strip()!r}") from None
        out.append((number, fields))
    return out


def _images(folder: Path, name: str) -> tuple[np.ndarray, list[Path], list[int]]:
    """Timestamps (N,), paths and line numbers of rgb.txt or depth.txt; every listed file must exist."""
    entries = _entries(folder / name, 2)
    paths = [folder / f for _, (_, f) in entries]
    for (number, (_, f)), path in zip(entries, paths, strict=True):
        if not path.is_file():
            raise PipelineError(f"{folder / name} line {number}: {f} does not exist; restore it or drop the line")
    return np.array([float(t) for _, (t, _) in entries]), paths, [n for n, _ in entries]


def _groundtruth(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sorted timestamps (K,) and camera-to-world poses (K, 4, 4) of groundtruth.txt."""
    path = folder / "groundtruth.txt"
    entries = _entries(path, 8)
    if not entries:
        raise PipelineError(f"{path}: holds no poses; a sequence needs its ground truth")
    values = np.array([[float(v) for v in fields] for _, fields in entries])  # (K, 8)
    norms = np.linalg.norm(values[:, 4:], axis=1)
    bad = np.nonzero(np.abs(norms - 1) > UNIT_QUATERNION_TOL)[0]
    if len(bad):
        k = int(bad[0])
        raise PipelineError(f"{path} line {entries[k][0]}: quaternion norm {norms[k]:.4f}, not a unit quaternion")
    order = np.argsort(values[:, 0], kind="stable")
    values = values[order]
    poses = np.tile(np.eye(4), (len(values), 1, 1))
    poses[:, :3, :3] = Rotation.from_quat(values[:, 4:]).as_matrix()
    poses[:, :3, 3] = values[:, 1:4]
    return values[:, 0], poses


def _check_depth_png(path: Path, listing: Path, number: int) -> None:
    with Image.open(path) as img:  # reads the header only
        if img.mode not in _SIXTEEN_BIT:
            raise PipelineError(f"{listing} line {number}: {path.name} is a {img.mode} image, not a 16-bit depth PNG")


def read_sequence(
    folder: Path,
    tolerance_s: float = 0.02,
    require_depth: bool = True,
    require_groundtruth: bool = True,
    interpolate_groundtruth: bool = False,
) -> Sequence:
    """Reads a TUM-layout sequence and associates its RGB, depth and ground truth by timestamp.

    Each RGB frame takes the nearest depth frame within `tolerance_s` (TUM's associate.py)
    and the nearest ground-truth pose within `tolerance_s` (`associate.pose_at`, as TUM's
    evaluation scripts). A frame with none (a mocap dropout, or before the first or after
    the last sample) is kept with `pose` None: tracked, never scored.

    Args:
        folder: the sequence folder.
        tolerance_s: the association window in seconds (0.02 as TUM's tools).
        require_depth: True drops RGB frames without depth within the window (as associate.py);
            False keeps them with `depth_time` and `depth_path` None (for predicted depth),
            and then a missing depth.txt means no depth at all.
        require_groundtruth: False reads a sequence without groundtruth.txt (odometry on
            one's own recording): every frame is kept, with `pose` None.
        interpolate_groundtruth: slerp the ground truth to each frame's time instead of
            taking the nearest sample (a labelled variant; not what TUM's tools score).

    Raises:
        PipelineError: a listed image is missing, a line is malformed, a depth PNG is not
            16-bit, a quaternion is not unit, no frame is left, or ground truth is required
            and no frame has a pose within the window.
    """
    folder = Path(folder)
    rgb_t, rgb_paths, rgb_lines = _images(folder, "rgb.txt")
    no_depth = not require_depth and not (folder / "depth.txt").exists()
    depth_t, depth_paths, depth_lines = (np.zeros(0), [], []) if no_depth else _images(folder, "depth.txt")
    if len(rgb_t) == 0:
        raise PipelineError(f"{folder / 'rgb.txt'}: lists no frames; the sequence is empty")
    gt = None if not require_groundtruth and not (folder / "groundtruth.txt").exists() else _groundtruth(folder)
    pairs = associate(rgb_t, depth_t, tolerance_s)
    frames = []
    for i in np.argsort(rgb_t, kind="stable"):
        j = pairs.get(int(i))
        if j is None and require_depth:
            continue
        pose = None if gt is None else pose_at(float(rgb_t[i]), *gt, tolerance_s, interpolate_groundtruth)
        if j is not None:
            _check_depth_png(depth_paths[j], folder / "depth.txt", depth_lines[j])
        depth_time, depth_path = (float(depth_t[j]), depth_paths[j]) if j is not None else (None, None)
        frames.append(RGBDFrame(float(rgb_t[i]), rgb_paths[i], depth_time, depth_path, pose))
    if not frames:
        raise PipelineError(f"{folder}: no RGB frame has depth within {tolerance_s} s; the sequence is empty")
    scored = sum(f.pose is not None for f in frames)
    if gt is not None and require_groundtruth and not scored:
        raise PipelineError(
            f"{folder / 'groundtruth.txt'}: no RGB frame has a pose within {tolerance_s} s; "
            "check its timestamps against rgb.txt or widen sequences.tolerance_s"
        )
    with Image.open(frames[0].rgb_path) as img:
        width, height = img.size
    log.info("%s: %d of %d RGB frames associated, %d with ground truth", folder.name, len(frames), len(rgb_t), scored)
    return Sequence(folder.name, folder, read_intrinsics(folder, width, height), tuple(frames))
