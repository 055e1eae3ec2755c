"""Relative pose error (RPE) and absolute trajectory error (ATE), computed with evo, the field's package.

Two entry points, both returning plain JSON-ready dicts with stable keys
(docs/odometry-protocol.md lists them):

- `score_pairs`: frame pairs estimated independently (the pose stage: pairs at several
  gaps). Per pair, evo's RPE error pose E = inv(Q_rel) @ P_rel, where Q_rel and P_rel
  are the ground-truth and estimated pose of camera j in camera i's frame, i.e.
  inv(T_j_from_i): translation error |t(E)| in metres, rotation error = angle of R(E)
  in degrees (TUM RGB-D's definition, as evo's `RPE.rpe_base`).
- `score_trajectory`: a whole estimated trajectory against the ground truth (the
  odometry CLI): RPE at several frame gaps over the pairs (i, i + gap) of estimated
  frames whose two ends have a ground-truth pose, and ATE RMSE over the frames that
  have one, after Umeyama alignment, SE(3) (the estimates are metric) and Sim(3)
  (labelled, with the fitted scale). Each estimated pose takes the nearest ground-truth
  pose within 0.02 s (TUM's associate.py, `pipeline.sequences.associate`); an estimate
  with none (a mocap dropout) is left out, as TUM's tools do, and the counts say so.

Only evo.core is imported: evo.tools would import matplotlib and read or write evo's
settings file under the user's home; evo.core does neither.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from evo import EvoException
from evo.core import lie_algebra as lie
from evo.core import metrics
from evo.core.trajectory import PoseTrajectory3D

from pipeline.errors import PipelineError
from pipeline.sequences.associate import associate
from pipeline.trajectory.poses import check_poses, relative_motion

# Frame gaps for RPE: 1 is frame-to-frame odometry; 2-8 show how the error grows with
# the motion between frames (at TUM's 30 Hz, 8 frames is ~0.27 s of hand-held motion).
GAPS = (1, 2, 4, 8)
# TUM RGB-D's associate.py matches timestamps within 0.02 s (its --max_difference default).
MAX_TIME_DIFF_S = 0.02
STATS = ("rmse", "mean", "median")


def statistics(errors: np.ndarray) -> dict[str, float | None]:
    """{"rmse", "mean", "median"} of per-pair or per-pose errors, with evo's statistics (None for no errors)."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return dict.fromkeys(STATS)
    pe = metrics.APE()  # any PE metric: get_statistic is evo's one implementation over .error
    pe.error = errors
    return {name: float(pe.get_statistic(metrics.StatisticsType(name))) for name in STATS}


def pair_errors(motion_gt: np.ndarray, motion_est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair RPE of relative motions T_j_from_i (N, 4, 4) -> (translation m (N,), rotation deg (N,)).

    E = evo's `RPE.rpe_base` on the pair's poses with camera i at the origin: the same
    error a trajectory's RPE gives for pair (i, j), so the two scorers agree.
    """
    gt = check_poses(motion_gt, "ground-truth motions")
    est = check_poses(motion_est, "estimated motions")
    if gt.shape != est.shape:
        raise ValueError(f"{len(gt)} ground-truth motions but {len(est)} estimates")
    eye = np.eye(4)
    E = [metrics.RPE.rpe_base(eye, lie.se3_inverse(g), eye, lie.se3_inverse(e)) for g, e in zip(gt, est, strict=True)]
    trans = np.array([np.linalg.norm(e[:3, 3]) for e in E])
    rot = np.array([abs(lie.so3_log_angle(e[:3, :3], degrees=True)) for e in E])
    return trans, rot


def _rpe_entry(trans: np.ndarray, rot: np.ndarray) -> dict:
    return {"n": int(len(trans)), "trans_m": statistics(trans), "rot_deg": statistics(rot)}


def score_pairs(motion_gt: np.ndarray, motion_est: np.ndarray, gaps: Sequence[int] | np.ndarray) -> dict:
    """RPE of independently estimated pairs, grouped by their frame gap.

    Args:
        motion_gt: ground-truth T_j_from_i (N, 4, 4).
        motion_est: estimated T_j_from_i (N, 4, 4) for the same pairs.
        gaps: (N,) the frame gap j - i of each pair.

    Returns:
        {"rpe": {"gap_<k>": {"n", "trans_m": {"rmse", "mean", "median"}, "rot_deg": {...}}}}
        for each gap present, in increasing order.
    """
    gaps = np.asarray(gaps, dtype=np.int64)
    trans, rot = pair_errors(motion_gt, motion_est)
    if gaps.shape != trans.shape:
        raise ValueError(f"{len(trans)} pairs but {gaps.size} gaps")
    return {"rpe": {f"gap_{k}": _rpe_entry(trans[gaps == k], rot[gaps == k]) for k in np.unique(gaps).tolist()}}


def _trajectory(stamps: np.ndarray, poses: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(N,) timestamps and (N, 4, 4) checked poses, sorted by time."""
    stamps = np.asarray(stamps, dtype=np.float64)
    poses = check_poses(poses, name)
    if stamps.shape != (len(poses),):
        raise ValueError(f"{name}: {len(poses)} poses but timestamps of shape {stamps.shape}")
    if len(poses) == 0:
        raise PipelineError(f"{name}: the trajectory is empty; estimate at least two frames")
    order = np.argsort(stamps, kind="stable")
    return stamps[order], poses[order]


def match_stamps(gt_stamps: np.ndarray, est_stamps: np.ndarray, max_diff: float) -> np.ndarray:
    """(N,) index of the ground-truth pose each estimate is scored against; -1 where none is within `max_diff` s.

    TUM's associate.py (closest first, each timestamp once): at 100 Hz ground truth and
    30 Hz frames this is each frame's nearest ground-truth sample.
    """
    out = np.full(len(est_stamps), -1, dtype=np.int64)
    for i, j in associate(np.asarray(est_stamps), np.asarray(gt_stamps), max_diff).items():
        out[i] = j
    return out


def _rpe_gap(gt: np.ndarray, est: np.ndarray, match: np.ndarray, gap: int) -> dict:
    """RPE over the estimate's pairs (i, i + gap) whose two ends are matched (`match` >= 0)."""
    i = np.arange(max(len(est) - gap, 0))
    i = i[(match[i] >= 0) & (match[i + gap] >= 0)]
    if len(i) == 0:
        return _rpe_entry(np.empty(0), np.empty(0))
    return _rpe_entry(
        *pair_errors(relative_motion(gt[match[i]], gt[match[i + gap]]), relative_motion(est[i], est[i + gap]))
    )


def _ate(ref: PoseTrajectory3D, est: PoseTrajectory3D, with_scale: bool) -> dict:
    """ATE translation statistics after Umeyama alignment of a copy of `est` onto `ref`."""
    aligned = copy.deepcopy(est)
    scale: float | None = 1.0
    spread = np.ptp(est.positions_xyz, axis=0).max() if est.num_poses else 0.0
    if spread < 1e-9:
        # One point (e.g. the identity baseline: the camera never moves): Umeyama's covariance
        # is zero and evo refuses. Any rotation and scale leave one point where it is, so the
        # optimum is the translation onto the ground truth's centroid; no scale is fitted.
        shift = ref.positions_xyz.mean(axis=0) - est.positions_xyz.mean(axis=0)
        aligned.transform(lie.se3(np.eye(3), shift))
        scale = None if with_scale else 1.0
    else:
        try:
            scale = float(aligned.align(ref, correct_scale=with_scale)[2])
        except EvoException as e:
            raise PipelineError(f"ATE: Umeyama alignment failed ({e}); the estimate is degenerate (collinear)") from e
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, aligned))
    stats = statistics(ape.error)
    out: dict = {f"{k}_m": v for k, v in stats.items()}
    if with_scale:
        out["scale"] = scale
    return out


def score_trajectory(
    gt_stamps: np.ndarray,
    gt_poses: np.ndarray,
    est_stamps: np.ndarray,
    est_poses: np.ndarray,
    gaps: Sequence[int] = GAPS,
    max_diff: float = MAX_TIME_DIFF_S,
) -> dict:
    """ATE and RPE of an estimated trajectory against the ground truth, with evo's errors.

    Args:
        gt_stamps: ground-truth timestamps (M,) seconds.
        gt_poses: ground-truth camera-to-world poses (M, 4, 4).
        est_stamps: the estimate's timestamps (N,) seconds.
        est_poses: the estimate's camera-to-world poses (N, 4, 4), in any world frame
            (the alignment removes it).
        gaps: RPE frame gaps, counted in the estimate's frames; a pair is scored when both
            of its frames have a ground-truth pose.
        max_diff: timestamp association tolerance in seconds (TUM's 0.02 by default).

    Returns:
        {"n_poses" (= "frames_scored"), "frames": estimated poses, "frames_scored": those
        with a ground-truth pose (ATE's), "rpe": {"gap_<k>": {"n" (pairs scored),
        "trans_m": {rmse, mean, median}, "rot_deg": {...}}}, "ate": {"se3": {"rmse_m",
        "mean_m", "median_m"}, "sim3": {"rmse_m", "mean_m", "median_m", "scale"}}}. A gap
        with no pair has n = 0 and None statistics; Sim(3)'s scale is None when the
        estimate is a single point.

    Raises:
        PipelineError: no estimated pose has a ground-truth pose within `max_diff`.
    """
    gt_stamps, gt = _trajectory(gt_stamps, gt_poses, "ground truth")
    est_stamps, est = _trajectory(est_stamps, est_poses, "estimate")
    match = match_stamps(gt_stamps, est_stamps, max_diff)
    scored = match >= 0
    if not scored.any():
        raise PipelineError(
            f"no estimated pose has a ground-truth timestamp within {max_diff} s; check that both files share one clock"
        )
    rpe = {f"gap_{gap}": _rpe_gap(gt, est, match, gap) for gap in gaps}
    ref = PoseTrajectory3D(timestamps=est_stamps[scored], poses_se3=list(gt[match[scored]]))
    aligned = PoseTrajectory3D(timestamps=est_stamps[scored], poses_se3=list(est[scored]))
    ate = {"se3": _ate(ref, aligned, with_scale=False), "sim3": _ate(ref, aligned, with_scale=True)}
    n = int(scored.sum())
    return {"n_poses": n, "frames": len(est), "frames_scored": n, "rpe": rpe, "ate": ate}
