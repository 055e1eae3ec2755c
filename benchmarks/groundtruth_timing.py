"""What caps success at gap 4 on real frames: the same estimates scored against differently timed ground truth.

    python benchmarks/groundtruth_timing.py                          # /work/data/tum's dev sequences
    python benchmarks/groundtruth_timing.py --max-frames 150 --record

For each sequence folder under `--data` (TUM's layout), every pair at `--gaps` is aligned
once with intensities and sensor depth at `--size` (the pose stage's estimator; encoder
features too with `--model`), and the same estimates are scored (success: within 1 cm
and 0.5 degree, `pose.success_*`) against the ground truth taken four ways:

- `nearest`: the nearest mocap sample within 0.02 s, TUM's tools' rule (the protocol);
- `interpolated`: slerped to the frame's timestamp;
- `interpolated, shifted S ms`: slerped to the timestamp plus S, for each S in `--shifts`.

If success rises when the ground truth is interpolated, or shifted to a better time, the
figure is capped by the ground truth's timing, not by the estimator: the estimates did
not change. The sequence's depth-to-RGB time offsets are printed too (TUM's depth frames
are taken up to 20 ms apart from the RGB frame they are associated with; the target's
depth then describes another viewpoint). The last line is JSON: one object per sequence.

fr1/rpy's RGB frames 0-299 are held out for acceptance: a sequence that holds any of them
is refused (`benchmarks/real_frames.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.real_frames import _check_not_held_out  # noqa: E402
from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.model import load_model  # noqa: E402
from pipeline.pose import se3, warp  # noqa: E402
from pipeline.pose.estimate import Variant, estimate_group  # noqa: E402
from pipeline.pose.frames import SequenceFrames, load_frames, pairs_for  # noqa: E402
from pipeline.pose.scores import pair_rows, true_motion  # noqa: E402
from pipeline.pose.solver import AlignOptions  # noqa: E402
from pipeline.sequences.associate import pose_at  # noqa: E402
from pipeline.sequences.layout import _groundtruth, list_sequences, read_sequence  # noqa: E402

TOLERANCE_S = 0.02  # TUM's association window


def _shifted(frames: SequenceFrames, folder: Path, shift_s: float) -> SequenceFrames | None:
    """The frames with ground truth slerped to each timestamp + shift_s (None where no sample is near)."""
    times, poses = _groundtruth(folder)
    at = [pose_at(t + shift_s, times, poses, TOLERANCE_S, interpolate=True) for t in frames.times]
    has = np.array([p is not None for p in at]) & frames.has_groundtruth
    if not has.any():
        return None
    filled = np.stack([p if p is not None else np.eye(4) for p in at])
    return dataclasses.replace(frames, poses=filled, has_groundtruth=has)


def _depth_at_rgb_time(frames: SequenceFrames, seq, folder: Path) -> np.ndarray:
    """(N, h, w) sensor depth re-rendered at each RGB frame's time with the ground truth's motion (an oracle).

    Each depth pixel is back-projected in the camera at the depth frame's time, moved by
    the ground-truth motion to the camera at the RGB frame's time (both slerped), and
    splatted to its nearest pixel, the nearest surface winning. Frames without ground truth
    at either time keep their depth as it was.
    """
    times, poses = _groundtruth(folder)
    n, h, w = frames.depth.shape
    k = warp.level_intrinsics(frames.intrinsics, 1, torch.device("cpu"))
    out = frames.depth.copy()
    for i, f in enumerate(seq.frames[:n]):
        at_d = pose_at(f.depth_time, times, poses, TOLERANCE_S, interpolate=True)
        at_c = pose_at(f.rgb_time, times, poses, TOLERANCE_S, interpolate=True)
        if at_d is None or at_c is None:
            continue
        X, ok = warp.back_project(torch.from_numpy(frames.depth[i])[None, None], k)  # depth camera: (1, N, 3)
        T = torch.from_numpy(np.linalg.inv(at_c) @ at_d).float()[None]  # depth camera -> RGB camera
        Y = se3.transform(T, X[ok][None])  # (1, m, 3)
        uv, front = warp.project(Y, k)
        u, v = uv[0, :, 0].round().long().numpy(), uv[0, :, 1].round().long().numpy()
        keep = front[0].numpy() & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        zbuf = np.full(h * w, np.inf)
        np.minimum.at(zbuf, v[keep] * w + u[keep], Y[0, :, 2].numpy()[keep])  # the nearest surface wins
        out[i] = np.where(np.isfinite(zbuf), zbuf, 0).reshape(h, w).astype(np.float32)
    return out


def _rates(frames: SequenceFrames, pairs, estimates: dict, thresholds: tuple[float, float]) -> dict:
    """Per method and gap, against `frames`' poses: success (%), median errors, rotation RMSE (degrees)."""
    gt = true_motion(frames, pairs)
    out = {}
    for name, est in estimates.items():
        rows, success = pair_rows(frames, pairs, gt, name, est, thresholds)
        per_gap = {}
        for g in sorted(set(pairs.gap.tolist())):
            m = (pairs.gap == g) & rows["scored"].to_numpy()
            rot, trans = rows["rot_err_deg"].to_numpy()[m], rows["trans_err_m"].to_numpy()[m]
            per_gap[f"gap_{g}"] = {
                "success_pct": round(100 * float(success[m].mean()), 1),
                "median_rot_deg": round(float(np.median(rot)), 3),
                "median_trans_mm": round(1000 * float(np.median(trans)), 2),
                "rot_rmse_deg": round(float(np.sqrt(np.mean(rot**2))), 3),
            }
        out[name] = per_gap
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/tum"), help="a folder of TUM-layout sequences")
    ap.add_argument("--size", default="240x320", help="working size HxW")
    ap.add_argument("--gaps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--shifts", type=float, nargs="+", default=[-20.0, -15.0, -10.0, -5.0, 5.0],
                    help="ms added to each frame's timestamp before slerping the ground truth")  # fmt: skip
    ap.add_argument("--max-frames", type=int, default=0, help="the first N associated frames of each (0: all)")
    ap.add_argument("--model", type=Path, help="a depth network: adds encoder features (sensor depth)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    ap.add_argument("--oracle-depth", action="store_true",
                    help="also align with the target's depth moved to its RGB time by the ground truth")  # fmt: skip
    add_record_flag(ap, "groundtruth_timing")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rec = Recording.begin("groundtruth_timing", args.record)
    pose = load_params(Path(__file__).resolve().parents[1] / "params.yaml").pose
    thresholds = (pose.success_trans_m, pose.success_rot_deg)
    device = torch.device("cpu")
    model = load_model(args.model, map_location=device)[0] if args.model else None
    h, w = (int(v) for v in args.size.split("x"))
    out = []
    for folder in list_sequences(args.data):
        seq = read_sequence(folder, TOLERANCE_S)
        frames = load_frames(seq, (h, w), args.max_frames)
        _check_not_held_out(frames)
        pairs = pairs_for(len(frames), args.gaps)
        estimates = estimate_group(frames, pairs, [Variant("rgb", "sensor")], None, frames.depth, AlignOptions(),
                                   pose.batch_size, device)  # fmt: skip
        if model is not None:
            estimates |= estimate_group(frames, pairs, [Variant("encoder", "sensor")], model, frames.depth,
                                        AlignOptions(), pose.batch_size, device)  # fmt: skip
        if args.oracle_depth:  # the same estimator on depth re-rendered at the RGB frames' times
            # (as the "predicted" depth: estimate_group reads a sensor variant's depth from the frames)
            moved = _depth_at_rgb_time(frames, seq, folder)
            oracle = estimate_group(frames, pairs, [Variant("rgb", "predicted")], None, moved, AlignOptions(),
                                    pose.batch_size, device)  # fmt: skip
            estimates["rgb_sensor_depth_at_rgb_time"] = oracle["rgb_predicted"]
        lag = np.array([f.depth_time - f.rgb_time for f in seq.frames[: len(frames)]])
        row = {
            "sequence": frames.name, "frames": len(frames), "size": args.size,
            "depth_minus_rgb_ms": {"median": round(1000 * float(np.median(lag)), 1),
                                   "max_abs": round(1000 * float(np.abs(lag).max()), 1)},
            "scored_against": {"nearest": _rates(frames, pairs, estimates, thresholds)},
        }  # fmt: skip
        interp = read_sequence(folder, TOLERANCE_S, interpolate_groundtruth=True)
        frames_i = dataclasses.replace(frames, poses=interp.poses[: len(frames)])
        row["scored_against"]["interpolated"] = _rates(frames_i, pairs, estimates, thresholds)
        for shift in args.shifts:
            moved = _shifted(frames, folder, shift / 1000)
            if moved is not None:
                row["scored_against"][f"interpolated, shifted {shift:+g} ms"] = _rates(moved, pairs, estimates,
                                                                                      thresholds)  # fmt: skip
        for how, rates in row["scored_against"].items():
            for method, gaps in rates.items():
                cells = ", ".join(f"{g} {v['success_pct']:.0f}% ({v['median_rot_deg']:.2f} deg, "
                                  f"{v['median_trans_mm']:.1f} mm)" for g, v in gaps.items())  # fmt: skip
                print(f"{frames.name} {method} vs {how}: {cells}", flush=True)
        print(f"{frames.name}: depth - rgb time {row['depth_minus_rgb_ms']} ms", flush=True)
        out.append(row)
    rec.finish(out)


if __name__ == "__main__":
    main()
