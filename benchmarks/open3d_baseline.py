"""Accuracy and speed of the Open3D RGB-D odometry baseline on rendered pairs (run on demand; not a test).

    python benchmarks/open3d_baseline.py                       # 12 rooms, 120x160, gaps 1 2 4 8
    python benchmarks/open3d_baseline.py --rooms 20 --height 240 --width 320 --depth-max 4 6

For each room (pipeline.synthetic.scenes, seeds 200..) a target frame is rendered and,
per gap, a source frame moved as a hand-held camera at 0.4 m/s and 20 deg/s would be
after `gap` frames at 30 Hz (a random direction per room). Each pair goes through
`baselines.open3d_odometry` with sensor depth (Kinect holes) and each `--depth-max`;
errors are `metrics.pair_errors`. Printed: median translation / rotation error, RMSE,
how many pairs are within 1 cm and 1 deg, and the median time per pair. The last line is
a JSON list with one object per (gap, depth-max).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.camera import NYU_KINECT  # noqa: E402
from pipeline.synthetic.raycast import camera_to_world, render_frame  # noqa: E402
from pipeline.synthetic.scenes import sample_camera, sample_scene  # noqa: E402
from pipeline.trajectory.baselines import open3d_odometry  # noqa: E402
from pipeline.trajectory.metrics import pair_errors  # noqa: E402
from pipeline.trajectory.poses import relative_motion  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rooms", type=int, default=12)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--gaps", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--depth-max", type=float, nargs="+", default=[4.0, 6.0])
    add_record_flag(ap, "open3d_baseline")
    args = ap.parse_args()
    rec = Recording.begin("open3d_baseline", args.record)
    size = (args.height, args.width)
    K = NYU_KINECT.scaled(args.width, args.height)
    rows: dict[tuple[int, float], list[tuple[float, float, float]]] = {}
    for room in range(args.rooms):
        rng = np.random.default_rng(200 + room)
        scene = sample_scene(rng, 200 + room)
        cam = sample_camera(rng, scene)
        rgb_i, _, depth_i = render_frame(scene, cam, size)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        for gap in args.gaps:
            pos = tuple(np.asarray(cam.position) + direction * gap * 0.4 / 30)
            cam_j = dataclasses.replace(cam, position=pos, yaw=cam.yaw + np.radians(gap * 20 / 30), noise_seed=room + 1)
            rgb_j, _, depth_j = render_frame(scene, cam_j, size)
            motion = relative_motion(camera_to_world(cam)[None], camera_to_world(cam_j)[None])
            for dmax in args.depth_max:
                t0 = time.perf_counter()
                T, _ = open3d_odometry(rgb_i, depth_i, rgb_j, depth_j, K, depth_range_m=(0.3, dmax))
                dt = time.perf_counter() - t0
                trans, rot = pair_errors(motion, T[None])
                rows.setdefault((gap, dmax), []).append((float(trans[0]), float(rot[0]), dt))
    out = []
    for (gap, dmax), vals in sorted(rows.items()):
        v = np.array(vals)  # (rooms, 3): trans m, rot deg, seconds
        entry = {
            "gap": gap,
            "depth_max_m": dmax,
            "size": f"{args.height}x{args.width}",
            "pairs": len(v),
            "trans_median_m": float(np.median(v[:, 0])),
            "trans_rmse_m": float(np.sqrt(np.mean(v[:, 0] ** 2))),
            "rot_median_deg": float(np.median(v[:, 1])),
            "within_1cm_1deg": int(np.sum((v[:, 0] < 0.01) & (v[:, 1] < 1.0))),
            "ms_per_pair": 1000 * float(np.median(v[:, 2])),
        }
        out.append(entry)
        print(
            f"gap {gap} depth<= {dmax:g} m: trans median {entry['trans_median_m'] * 1000:.1f} mm "
            f"(RMSE {entry['trans_rmse_m'] * 1000:.1f} mm), rot median {entry['rot_median_deg']:.2f} deg, "
            f"{entry['within_1cm_1deg']}/{len(v)} within 1 cm and 1 deg, {entry['ms_per_pair']:.0f} ms/pair"
        )
    rec.finish(out)


if __name__ == "__main__":
    main()
