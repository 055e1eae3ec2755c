"""Peak memory of the preprocess stage on a labeled file of the real size (1449 frames, ~2.9 GB).

    .venv/bin/python benchmarks/preprocess_memory.py --dir /tmp

Writes a NYUDv2-layout file with cheap content tuned to compress like the real one
(noise RGB; blocky depth; mm-quantised raw depth with holes), runs `preprocess` on it in
a child process and reports the child's peak RSS. The last stdout line is JSON:
`{"frames": ..., "file_gb": ..., "peak_rss_mb": ..., "seconds": ...}`.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.data.matlab import HEIGHT, WIDTH, Frame, write_labeled_mat, write_splits_mat  # noqa: E402

N_TRAIN = 795  # NYUDv2's official split sizes
N_TEST = 654

CHILD = """
import sys
from pipeline.config import load_params
from pipeline.data.preprocess import preprocess
preprocess(sys.argv[1], sys.argv[2], sys.argv[3], load_params("params.yaml").preprocess, "synthetic")
"""


def noise_frames(n: int, seed: int = 0) -> Iterator[Frame]:
    """Cheap frames whose gzip ratio makes the file about the real one's size."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # incompressible, like photos nearly are
        coarse = 0.5 + 9.5 * rng.random((HEIGHT // 2, WIDTH // 2), dtype=np.float32)
        depth = np.repeat(np.repeat(coarse, 2, 0), 2, 1)  # (480, 640) metres
        raw = np.round(depth + rng.normal(0, 0.02, depth.shape), 3).astype(np.float32)  # Kinect: mm steps
        raw[rng.random(depth.shape) < 0.2] = 0.0
        yield Frame(rgb, depth, raw, f"scene_{i // 3:04d}", ("bedroom", "kitchen", "office")[i % 3])


def main() -> None:
    """Generates the file, runs preprocess in a child process, prints the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp", help="where the temporary files go (needs ~7 GB free)")
    ap.add_argument("--frames", type=int, default=N_TRAIN + N_TEST)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    add_record_flag(ap, "preprocess_memory")
    args = ap.parse_args()
    rec = Recording.begin("preprocess_memory", args.record)
    work = Path(tempfile.mkdtemp(prefix="nyu_bench_", dir=args.dir))
    try:
        labeled, splits, out = work / "nyu_depth_v2_labeled.mat", work / "splits.mat", work / "processed"
        n = args.frames
        write_labeled_mat(labeled, tqdm(noise_frames(n), total=n, desc="write labeled", unit="img"), n)
        perm = np.random.default_rng(0).permutation(np.arange(1, n + 1))
        n_test = round(n * N_TEST / (N_TRAIN + N_TEST))
        write_splits_mat(splits, np.sort(perm[n_test:]), np.sort(perm[:n_test]))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, labeled, splits, out], cwd=REPO, check=True)
        seconds = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        result = {
            "frames": n,
            "file_gb": round(labeled.stat().st_size / 1e9, 3),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "seconds": round(seconds, 1),
        }
        rec.finish(result)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
