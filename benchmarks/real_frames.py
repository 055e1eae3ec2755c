"""The odometry CLI's tracking on real TUM RGB-D frames (run on demand; not a test).

    python benchmarks/real_frames.py                                   # /work/data/tum's dev sequences
    python benchmarks/real_frames.py --max-frames 150 --record         # writes results/real_frames.json
    python benchmarks/real_frames.py --model models/model.pt           # adds encoder features (sensor depth)

For each sequence folder under `--data` (TUM's layout; /work/data/tum/README.txt says
what is there), each working size and each tracking mode (`keyframe`, `frame`), the
frames are tracked as `python -m pipeline.odometry` tracks them (intensities and sensor
depth; encoder features too with `--model`) and scored as it scores them: ATE after SE(3)
alignment and per-frame RPE, over the frames and pairs that have a ground-truth pose
within 0.02 s (the nearest; docs/odometry-protocol.md). Prints one line per run and, last,
a JSON list with one object per run.

fr1/rpy's RGB frames 0-299 are held out for acceptance: a sequence that holds any of them
is refused (the development copy starts at frame 300).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.model import load_model  # noqa: E402
from pipeline.odometry import options_for, score, track  # noqa: E402
from pipeline.pose.frames import SequenceFrames, load_frames  # noqa: E402
from pipeline.pose.solver import AlignOptions, point_budget  # noqa: E402
from pipeline.sequences.layout import list_sequences, read_sequence  # noqa: E402

HELD_OUT_UNTIL = {"freiburg1_rpy": 1305031239.51}  # fr1/rpy: RGB frame 300 is at 1305031239.529662


def _check_not_held_out(frames: SequenceFrames) -> None:
    for name, until in HELD_OUT_UNTIL.items():
        if name in frames.name and frames.times.min() < until:
            raise SystemExit(f"{frames.name}: holds fr1/rpy frames 0-299, held out for acceptance; use a dev copy")


def _run(frames: SequenceFrames, features: str, keyframes: bool, model, device: torch.device,
         options: AlignOptions | None = None) -> dict:  # fmt: skip
    """The CLI's tracking and scores on `frames`, with its options unless `options` are given."""
    h, w = frames.rgb.shape[1:3]
    options = options or options_for((h, w))  # the CLI's; the solver scales the points a level with the pixels
    odo = track(frames, model, features, "sensor", options, device, keyframes=keyframes)
    s = score(frames, odo)
    return {
        "sequence": frames.name,
        "frames": f"{len(frames)} ({s['frames_scored']} scored)",
        "size": f"{h}x{w}",
        "tracking": "keyframe" if keyframes else "frame-to-frame",
        "features": features,
        "points/level": point_budget((h, w), options),
        "depth weight": options.depth_weight,
        "ATE SE(3) m": round(s["ate"]["se3"]["rmse_m"], 4),
        "RPE/frame mm": round(1000 * s["rpe"]["gap_1"]["trans_m"]["rmse"], 2),
        "RPE/frame °": round(s["rpe"]["gap_1"]["rot_deg"]["rmse"], 3),
        "pairs scored": s["rpe"]["gap_1"]["n"],
        "converged": f"{int(odo.converged.sum())}/{len(odo.converged)}",
        "frames/s": round((len(frames) - 1) / odo.seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/data/tum"), help="a folder of TUM-layout sequences")
    ap.add_argument("--sizes", nargs="+", default=["240x320", "480x640"], help="working sizes HxW")
    ap.add_argument("--tracking", nargs="+", choices=("keyframe", "frame"), default=["keyframe", "frame"])
    ap.add_argument("--max-frames", type=int, default=0, help="the first N associated frames of each (0: all)")
    ap.add_argument("--model", type=Path, help="a depth network: adds encoder features")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    add_record_flag(ap, "real_frames")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rec = Recording.begin("real_frames", args.record)
    device = torch.device(args.device)
    model = load_model(args.model, map_location=device)[0] if args.model else None
    out = []
    for folder in list_sequences(args.data):
        seq = read_sequence(folder)
        for size in args.sizes:
            h, w = (int(v) for v in size.split("x"))
            frames = load_frames(seq, (h, w), args.max_frames)
            _check_not_held_out(frames)
            for features in ["rgb"] + (["encoder"] if model is not None else []):
                for mode in args.tracking:
                    row = _run(frames, features, mode == "keyframe", model, device)
                    print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
                    out.append(row)
    rec.finish(out)


if __name__ == "__main__":
    main()
