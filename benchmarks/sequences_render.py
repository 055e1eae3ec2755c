"""Time to plan, render and write synthetic sequences, per frame, at a few frame sizes.

    .venv/bin/python benchmarks/sequences_render.py --frames 30

For each size it plans, renders and writes one sequence (`plan_sequence`, `render_sequence`,
`write_sequence` into a temporary folder), then reads it back (`read_sequence`). The last
stdout line is JSON: `{"frames": ..., "sizes": {"HxW": {"plan_s", "render_write_s", "read_s",
"s_per_frame"}}}` (wall-clock seconds on this machine, whatever else it runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.sequences.layout import read_sequence, write_sequence  # noqa: E402
from pipeline.sequences.synthetic import plan_sequence, render_sequence  # noqa: E402


def main() -> None:
    """Prints a line per size and the JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--sizes", default="48x64,128x160,480x640")
    add_record_flag(ap, "sequences_render")
    args = ap.parse_args()
    rec = Recording.begin("sequences_render", args.record)
    base = load_params(REPO / "params.yaml").sequences.synthetic
    out: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            h, w = (int(v) for v in size.split("x"))
            params = dataclasses.replace(base, frames=args.frames, height=h, width=w)
            t0 = time.perf_counter()
            plan = plan_sequence(params, 0)
            t1 = time.perf_counter()
            folder = write_sequence(Path(tmp) / size, **render_sequence(params, plan))
            t2 = time.perf_counter()
            read_sequence(folder)
            t3 = time.perf_counter()
            out.append({"size": size, "frames": args.frames, "plan_s": round(t1 - t0, 3),
                        "render_write_s": round(t2 - t1, 3), "read_s": round(t3 - t2, 3),
                        "s_per_frame": round((t2 - t0) / args.frames, 4)})  # fmt: skip
            print(f"{size}: plan {t1 - t0:.2f} s, render+write {t2 - t1:.2f} s, read {t3 - t2:.2f} s "
                  f"({(t2 - t0) / args.frames:.3f} s a frame)")  # fmt: skip
    rec.finish(out)


if __name__ == "__main__":
    main()
