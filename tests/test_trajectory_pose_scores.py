"""The pose stage's scoring (`pipeline.pose.scores`) on real frames with a TUM mocap dropout: what is counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.pose.estimate import baseline
from pipeline.pose.frames import load_frames, pairs_for
from pipeline.pose.scores import MethodScores, collect, pair_rows, summary, true_motion
from pipeline.sequences.layout import read_sequence
from pipeline.trajectory.metrics import pair_errors

FIXTURE = Path(__file__).parent / "fixtures" / "rgbd_dataset_freiburg1_rpy_real"


def test_pairs_with_a_frame_without_ground_truth_are_listed_but_not_scored() -> None:
    frames = load_frames(read_sequence(FIXTURE), (48, 64), 0)
    assert frames.has_groundtruth.tolist() == [True] * 5 + [False] + [True] * 2 + [False, True]
    pairs = pairs_for(len(frames), [1, 2])
    gt = true_motion(frames, pairs)
    assert np.isfinite(gt).all()  # placeholders keep every motion finite
    est = baseline("identity", frames, pairs)
    rows, success = pair_rows(frames, pairs, gt, "identity", est, (0.01, 1.0))
    scored = frames.has_groundtruth[pairs.target] & frames.has_groundtruth[pairs.source]
    assert rows["scored"].tolist() == scored.tolist() and not success[~scored].any()
    assert rows.loc[~scored, "rot_err_deg"].isna().all() and rows.loc[scored, "rot_err_deg"].notna().all()
    acc = MethodScores()
    traj = collect(acc, frames, pairs, gt, est, success)
    out = summary(acc, {"depth": "none"})
    assert (out["frames"], out["frames_scored"]) == (10, 8)
    assert (out["pairs"], out["pairs_scored"]) == (9 + 8, 5 + 5)
    assert out["rpe"]["gap_1"]["n"] == 5 and out["rpe"]["gap_2"]["n"] == 5  # of 9 and 8
    one = scored & (pairs.gap == 1)
    _, rot = pair_errors(gt[one], est.motion[one])
    assert out["rpe"]["gap_1"]["rot_deg"]["rmse"] == np.sqrt(np.mean(rot**2))
    assert out["converged"]["gap_1"] == 1.0  # convergence needs no ground truth: over all 9 pairs
    assert traj is not None and traj.shape == (10, 4, 4)
    json.dumps(out)
