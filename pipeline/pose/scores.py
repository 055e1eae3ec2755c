"""Scores of the pose stage: per-pair rows, per-method RPE / success / ATE, the JSON and MLflow forms.

Errors and statistics are evo's (`pipeline.trajectory.metrics`). A pair *succeeds* when
the method reports convergence and its error is within both thresholds
(`pose.success_trans_m`, `pose.success_rot_deg`); the success rate per gap measures the
basin of each method from its initialisation (the identity).

Only pairs whose two frames have a ground-truth pose are scored (a mocap dropout leaves a
few frames without, `SequenceFrames.has_groundtruth`); their rows say `scored` False with
NaN errors, and each summary counts `frames_scored` and `pairs_scored` beside `pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.pose.estimate import Estimates
from pipeline.pose.frames import Pairs, SequenceFrames
from pipeline.trajectory.metrics import pair_errors, score_pairs, score_trajectory
from pipeline.trajectory.poses import chain, relative_motion

PAIR_COLUMNS = (
    "sequence", "method", "target", "source", "gap", "target_time", "source_time", "gt_trans_m", "gt_rot_deg",
    "trans_err_m", "rot_err_deg", "converged", "success", "status", "residual", "iterations", "scored",
)  # fmt: skip


@dataclass
class MethodScores:
    """What one method collected over all sequences."""

    gt: list[np.ndarray] = field(default_factory=list)  # (P_scored, 4, 4) per sequence: scored pairs only
    est: list[np.ndarray] = field(default_factory=list)
    gaps: list[np.ndarray] = field(default_factory=list)  # (P_scored,)
    success: list[np.ndarray] = field(default_factory=list)
    converged: list[np.ndarray] = field(default_factory=list)  # (P,) every pair: convergence needs no ground truth
    all_gaps: list[np.ndarray] = field(default_factory=list)  # (P,)
    ate: dict[str, dict] = field(default_factory=dict)  # sequence -> score_trajectory's "ate"
    frames: int = 0
    frames_scored: int = 0
    seconds: float = 0.0


def scored_pairs(frames: SequenceFrames, pairs: Pairs) -> np.ndarray:
    """(P,) bool: the pairs whose two frames have a ground-truth pose (the ones scored)."""
    return frames.has_groundtruth[pairs.target] & frames.has_groundtruth[pairs.source]


def true_motion(frames: SequenceFrames, pairs: Pairs) -> np.ndarray:
    """(P, 4, 4) ground-truth T_j_from_i of every pair: the same for every method, computed once a sequence."""
    return relative_motion(frames.groundtruth[pairs.target], frames.groundtruth[pairs.source])


def pair_rows(frames: SequenceFrames, pairs: Pairs, gt: np.ndarray, method: str, est: Estimates,
              thresholds: tuple[float, float]) -> tuple[pd.DataFrame, np.ndarray]:  # fmt: skip
    """One row per pair (PAIR_COLUMNS) and the (P,) success flags; `gt` is `true_motion`'s.

    A pair without ground truth at either end has NaN errors, `scored` False and never succeeds.
    """
    scored = scored_pairs(frames, pairs)
    trans, rot = (np.where(scored, e, np.nan) for e in pair_errors(gt, est.motion))
    gt_trans, gt_rot = (np.where(scored, e, np.nan) for e in pair_errors(gt, np.tile(np.eye(4), (len(gt), 1, 1))))
    success = scored & est.converged & (trans <= thresholds[0]) & (rot <= thresholds[1])
    rows = pd.DataFrame({
        "sequence": frames.name, "method": method, "target": pairs.target, "source": pairs.source, "gap": pairs.gap,
        "target_time": frames.times[pairs.target], "source_time": frames.times[pairs.source],
        "gt_trans_m": gt_trans, "gt_rot_deg": gt_rot, "trans_err_m": trans, "rot_err_deg": rot,
        "converged": est.converged, "success": success, "status": est.status, "residual": est.residual,
        "iterations": est.iterations, "scored": scored,
    })  # fmt: skip
    return rows, success


def trajectory(frames: SequenceFrames, pairs: Pairs, est: Estimates) -> np.ndarray | None:
    """(N, 4, 4) camera-to-world chained from the gap-1 estimates from the true first pose; None without gap 1."""
    one = pairs.gap == 1
    if one.sum() != len(frames) - 1:
        return None
    order = np.argsort(pairs.target[one])
    return chain(est.motion[one][order], first=frames.groundtruth[0])


def collect(acc: MethodScores, frames: SequenceFrames, pairs: Pairs, gt: np.ndarray, est: Estimates,
            success: np.ndarray) -> np.ndarray | None:  # fmt: skip
    """Adds one sequence's result to `acc` (scored pairs only, `scored_pairs`); returns its chained trajectory.

    The trajectory (None without gap 1) chains every frame; its ATE is over the frames with ground truth.
    """
    scored = scored_pairs(frames, pairs)
    acc.gt.append(gt[scored])
    acc.est.append(est.motion[scored])
    acc.gaps.append(pairs.gap[scored])
    acc.success.append(success[scored])
    acc.converged.append(est.converged)
    acc.all_gaps.append(pairs.gap)
    acc.frames += len(frames)
    acc.frames_scored += int(frames.has_groundtruth.sum())
    acc.seconds += est.seconds
    traj = trajectory(frames, pairs, est)
    if traj is not None:
        # Only its ATE: the RPE per gap is the pairs' own, scored once over all sequences in `summary`.
        m = frames.has_groundtruth
        acc.ate[frames.name] = score_trajectory(frames.times[m], frames.groundtruth[m], frames.times, traj, gaps=())[
            "ate"
        ]
    return traj


def _rates(flags: np.ndarray, gaps: np.ndarray) -> dict[str, float]:
    return {f"gap_{g}": float(flags[gaps == g].mean()) for g in np.unique(gaps).tolist()}


def _mean_ate(per_sequence: dict[str, dict]) -> dict[str, Any]:
    """The mean over sequences of each ATE figure (None where no sequence has one)."""
    out: dict[str, Any] = {}
    for align in ("se3", "sim3"):
        keys = {k for a in per_sequence.values() for k in a[align]}
        out[align] = {
            k: float(np.mean(v)) if (v := [a[align][k] for a in per_sequence.values() if a[align][k] is not None])
            else None
            for k in sorted(keys)
        }  # fmt: skip
    return out


def summary(acc: MethodScores, info: dict[str, Any]) -> dict[str, Any]:
    """The JSON entry of one method: RPE per gap, success and convergence rates per gap, ATE, pairs/s.

    RPE and success are over the scored pairs (`pairs_scored` of `pairs`), convergence over
    every pair; ATE over the `frames_scored` of `frames` that have ground truth.
    """
    gaps, all_gaps = np.concatenate(acc.gaps), np.concatenate(acc.all_gaps)
    n = len(all_gaps)
    return {
        **info,
        **score_pairs(np.concatenate(acc.gt), np.concatenate(acc.est), gaps),
        "success": _rates(np.concatenate(acc.success), gaps),
        "converged": _rates(np.concatenate(acc.converged), all_gaps),
        "ate": _mean_ate(acc.ate) if acc.ate else None,
        "ate_per_sequence": acc.ate,
        "pairs": n,
        "pairs_scored": len(gaps),
        "frames": acc.frames,
        "frames_scored": acc.frames_scored,
        "pairs_per_s": n / acc.seconds if acc.seconds > 1e-3 else None,  # None: standing still costs nothing
    }
