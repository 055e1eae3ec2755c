"""Published TUM RGB-D trajectory errors, for context only: copied from the papers, not reproduced here.

Every number is an ATE RMSE in metres on a TUM RGB-D sequence, with the protocol it was
measured under, because the protocol changes a number as much as the method does:
- input: RGB-D (metric depth from the sensor) or monocular (scale unobservable);
- alignment: SE3 (rigid, what TUM's ATE tool does) or Sim3 (scale fitted to the ground
  truth: a monocular estimate has no scale of its own, so its error is measured after the
  best possible scale is supplied);
- frames: which poses were scored (all frames, every n-th, keyframes, or not stated).
Only numbers read from the paper's table (or, for DeepV2D, from the table of the paper
that ran it) are listed; docs/odometry-protocol.md names what was left out and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Input = Literal["RGB-D", "monocular"]
Alignment = Literal["SE3", "Sim3"]


@dataclass(frozen=True)
class PublishedATE:
    """One method's ATE RMSE on one TUM RGB-D sequence, with its protocol and source."""

    method: str
    sequence: str  # TUM's short name, e.g. "fr1/desk"
    ate_m: float
    input: Input
    alignment: Alignment
    frames: str
    source: str  # paper and table


_ORB2_TABLE = "Mur-Artal & Tardos, ORB-SLAM2, IEEE T-RO 2017, Table III (translation RMSE, m)"
_ORB2_FRAMES = "not stated in the paper"
# SE3: all five are metric RGB-D systems, and the paper's absolute translation RMSE is the
# one of TUM's benchmark paper (its ref. [3]), whose ATE tool aligns rigidly, without scale.
# ORB-SLAM2's Table III: its own RGB-D results beside four RGB-D systems' numbers as
# collected there. Columns: ORB-SLAM2, ElasticFusion, Kintinuous, DVO-SLAM, RGBD-SLAM (None = not given).
_ORB2_ROWS = {
    "fr1/desk": (0.016, 0.020, 0.037, 0.021, 0.026),
    "fr1/desk2": (0.022, 0.048, 0.071, 0.046, None),
    "fr1/room": (0.047, 0.068, 0.075, 0.043, 0.087),
    "fr2/desk": (0.009, 0.071, 0.034, 0.017, 0.057),
    "fr2/xyz": (0.004, 0.011, 0.029, 0.018, None),
    "fr3/office": (0.010, 0.017, 0.030, 0.035, None),
    "fr3/nst": (0.019, 0.016, 0.031, 0.018, None),
}
_ORB2_METHODS = (
    "ORB-SLAM2 (RGB-D)",
    "ElasticFusion (Whelan et al. 2016)",
    "Kintinuous (Whelan et al. 2015)",
    "DVO-SLAM (Kerl et al. 2013)",
    "RGBD-SLAM (Endres et al. 2014)",
)

_DROID_TABLE = "Teed & Deng, DROID-SLAM, NeurIPS 2021, TUM-RGBD table (monocular, ATE m)"
# DROID-SLAM's evaluation_scripts/test_tum.py: every 2nd RGB frame, the full trajectory of
# those frames, evo APE with align=True, correct_scale=True.
_DROID_FRAMES = {"DROID-SLAM (monocular)": "every 2nd frame, all of them (not keyframes only)"}
# DeepV2D's row was run by the DROID-SLAM authors; how its frames were chosen is not stated.
_DEEPV2D_FRAMES = "not stated (run by the DROID-SLAM authors)"
_FR1 = ("360", "desk", "desk2", "floor", "plant", "room", "rpy", "teddy", "xyz")
_DROID_ROWS = {
    "DROID-SLAM (monocular)": (0.111, 0.018, 0.042, 0.021, 0.016, 0.049, 0.026, 0.048, 0.012),
    "DeepV2D (as run in the DROID-SLAM paper)": (0.243, 0.166, 0.379, 1.653, 0.203, 0.246, 0.105, 0.316, 0.064),
}
# The averages the DROID-SLAM table prints: the tests check the rows above reproduce them.
STATED_AVERAGES = {"DROID-SLAM (monocular)": 0.038, "DeepV2D (as run in the DROID-SLAM paper)": 0.375}


def _rows() -> tuple[PublishedATE, ...]:
    rows = [
        PublishedATE(method, seq, ate, "RGB-D", "SE3", _ORB2_FRAMES, _ORB2_TABLE)
        for seq, values in _ORB2_ROWS.items()
        for method, ate in zip(_ORB2_METHODS, values, strict=True)
        if ate is not None
    ]
    rows += [
        PublishedATE(
            method, f"fr1/{seq}", ate, "monocular", "Sim3", _DROID_FRAMES.get(method, _DEEPV2D_FRAMES), _DROID_TABLE
        )
        for method, values in _DROID_ROWS.items()
        for seq, ate in zip(_FR1, values, strict=True)
    ]
    return tuple(rows)


PUBLISHED_TUM: tuple[PublishedATE, ...] = _rows()


def published_rows() -> list[dict]:
    """The table as plain dicts (method, sequence, ate_m, input, alignment, frames, source), for the report."""
    return [asdict(r) for r in PUBLISHED_TUM]
