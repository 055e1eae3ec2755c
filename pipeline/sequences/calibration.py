"""A sequence's intrinsics: its `calibration.txt`, else TUM's published values for its Kinect.

`calibration.txt` is one line `fx fy cx cy` (as ETH3D's SLAM sequences add to TUM's layout);
without it, the freiburg1/2/3 in the folder's name picks TUM's values.

TUM's file-format page ("Intrinsic Camera Calibration of the Kinect") gives these for the
RGB camera at 640x480; the depth images are registered to it by the OpenNI driver, so one
pinhole serves both. TUM's images are not undistorted (fr1's d0 = 0.2624): like most
RGB-D odometry code we use the pinhole alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.camera import Intrinsics
from pipeline.errors import PipelineError
from pipeline.io import write_text_atomic

CALIBRATION = "calibration.txt"
TUM_WIDTH, TUM_HEIGHT = 640, 480
FREIBURG = {
    "freiburg1": Intrinsics(517.3, 516.5, 318.6, 255.3, TUM_WIDTH, TUM_HEIGHT),
    "freiburg2": Intrinsics(520.9, 521.0, 325.1, 249.7, TUM_WIDTH, TUM_HEIGHT),
    "freiburg3": Intrinsics(535.4, 539.2, 320.1, 247.6, TUM_WIDTH, TUM_HEIGHT),
}
_KINECT = re.compile(r"freiburg[123]")


def freiburg_intrinsics(name: str) -> Intrinsics | None:
    """TUM's intrinsics (640x480) for the Kinect named in `name` (e.g. rgbd_dataset_freiburg1_desk), or None."""
    match = _KINECT.search(name)
    return FREIBURG[match.group(0)] if match else None


def write_calibration(folder: Path, k: Intrinsics) -> None:
    """Writes `folder/calibration.txt`: one line `fx fy cx cy` at the sequence's image size."""
    write_text_atomic(Path(folder) / CALIBRATION, f"{k.fx!r} {k.fy!r} {k.cx!r} {k.cy!r}\n")


def read_intrinsics(folder: Path, width: int, height: int) -> Intrinsics:
    """The intrinsics of a sequence's `width` x `height` images.

    Raises:
        PipelineError: calibration.txt is malformed, or absent while the folder's name names no freiburg Kinect.
    """
    path = Path(folder) / CALIBRATION
    if path.is_file():
        lines = [(i, ln) for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.strip() and ln[0] != "#"]
        try:
            (number, line), *_ = lines
            fx, fy, cx, cy = (float(v) for v in line.split())
        except ValueError:
            where = f"line {lines[0][0]}" if lines else "line 1"
            raise PipelineError(f"{path} {where}: expected one line 'fx fy cx cy' (pixels); fix or delete it") from None
        return Intrinsics(fx, fy, cx, cy, width, height)
    k = freiburg_intrinsics(Path(folder).name)
    if k is None:
        raise PipelineError(
            f"{path}: not found, and the folder's name names no TUM Kinect (freiburg1/2/3); "
            "add calibration.txt with one line 'fx fy cx cy' at the images' size"
        )
    return k.scaled(width, height)
