"""What the geometric (depth) term adds on real frames: success per gap and the CLI's tracking, by weight.

    python benchmarks/geometric_term.py                        # /work/data/tum's dev sequences
    python benchmarks/geometric_term.py --threads 1 --record   # writes results/geometric_term.json

For each sequence folder under `--data` (TUM's layout) and each setting of the term
(`--weights`, each on the coarser levels only, and `--finest` weights on every level,
`AlignOptions.depth_finest`), intensities with sensor depth at `--size`:

- every pair at `--gaps` aligned from the identity, as the pose stage aligns them, and
  scored as it scores them (success within 1 cm and 0.5 degree against the nearest
  ground-truth pose, `pose.success_*`): success, median errors and rotation RMSE per gap;
- the odometry CLI's keyframe tracking over the same frames: ATE, per-frame RPE, frames/s.

Weight 0 is the photometric solver alone. The last line is JSON: one object per sequence
and setting. fr1/rpy's RGB frames 0-299 are held out for acceptance: a sequence that holds
any of them is refused (`benchmarks/real_frames.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.groundtruth_timing import _rates  # noqa: E402
from benchmarks.real_frames import _check_not_held_out, _run  # noqa: E402
from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.odometry import options_for  # noqa: E402
from pipeline.pose.estimate import Variant, estimate_group  # noqa: E402
from pipeline.pose.frames import load_frames, pairs_for  # noqa: E402
from pipeline.sequences.layout import list_sequences, read_sequence  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/tum"), help="a folder of TUM-layout sequences")
    ap.add_argument("--size", default="240x320", help="working size HxW")
    ap.add_argument("--gaps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.3, 1.0, 3.0],
                    help="depth_weight values, the term on the coarser levels only (0: photometric alone)")  # fmt: skip
    ap.add_argument("--finest", type=float, nargs="*", default=[1.0],
                    help="depth_weight values with the term on the finest level too")  # fmt: skip
    ap.add_argument("--max-frames", type=int, default=0, help="the first N associated frames of each (0: all)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    add_record_flag(ap, "geometric_term")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rec = Recording.begin("geometric_term", args.record)
    pose = load_params(Path(__file__).resolve().parents[1] / "params.yaml").pose
    thresholds = (pose.success_trans_m, pose.success_rot_deg)
    device = torch.device("cpu")
    h, w = (int(v) for v in args.size.split("x"))
    settings = [(wt, False) for wt in args.weights] + [(wt, True) for wt in args.finest]
    out = []
    for folder in list_sequences(args.data):
        frames = load_frames(read_sequence(folder), (h, w), args.max_frames)
        _check_not_held_out(frames)
        pairs = pairs_for(len(frames), args.gaps)
        for weight, finest in settings:
            options = dataclasses.replace(options_for((h, w)), depth_weight=weight, depth_finest=finest)
            start = time.perf_counter()
            est = estimate_group(frames, pairs, [Variant("rgb", "sensor")], None, frames.depth, options,
                                 pose.batch_size, device)["rgb_sensor"]  # fmt: skip
            pairs_s = time.perf_counter() - start
            cli = _run(frames, "rgb", True, None, device, options)
            row = {
                "sequence": frames.name, "size": args.size, "depth_weight": weight,
                "levels": "all" if finest or weight == 0 else "coarser",
                "pairs": _rates(frames, pairs, {"rgb_sensor": est}, thresholds)["rgb_sensor"],
                "pairs_per_s": round(len(pairs) / pairs_s, 1),
                "cli": {k: cli[k] for k in ("ATE SE(3) m", "RPE/frame mm", "RPE/frame °", "converged", "frames/s")},
            }  # fmt: skip
            cells = ", ".join(f"{g} {v['success_pct']:.0f}% ({v['median_trans_mm']:.1f} mm, {v['median_rot_deg']:.2f}"
                              f" deg, rmse {v['rot_rmse_deg']:.2f})" for g, v in row["pairs"].items())  # fmt: skip
            print(f"{frames.name} weight {weight} {row['levels']}: {cells}; CLI {row['cli']}", flush=True)
            out.append(row)
    rec.finish(out)


if __name__ == "__main__":
    main()
