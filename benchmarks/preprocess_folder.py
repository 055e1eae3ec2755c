"""Preprocess of the folder source on a generated set in BTS's sync layout: peak memory and frames/s.

    .venv/bin/python benchmarks/preprocess_folder.py --dir /tmp --frames 3000

Writes `--frames` pairs in BTS's layout (`<scene>/rgb_XXXXX.jpg`, 640x480 JPEG, and
`<scene>/sync_depth_XXXXX.png`, 16-bit millimetres with holes), 10% of them in separate
test scenes, with cheap procedural content (shaded boxes, sensor noise, holes) that
compresses about as real frames do. Then it times a bare single-threaded decode loop over
the same files (Pillow decode to numpy, nothing else) and preprocess's own decode + resize
in its thread pool (the training pairs, nothing written), and runs preprocess (train/val
resized to params.yaml's size, test kept at 480x640) in a child process, reporting its peak
RSS. Both passes read files the generator just wrote (in the page cache). The last stdout
line is JSON.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.data.folder import default_workers  # noqa: E402

H, W = 480, 640
PER_SCENE = 30  # frames per scene folder (BTS's 24,231 pairs are in 249 scenes: ~100 each)

CHILD = """
import sys
from pathlib import Path
from pipeline.config import FolderParams, load_params
from pipeline.data.preprocess import preprocess_folder
work = Path(sys.argv[1])
folder = FolderParams(root=Path("sync"), train_list=Path("train.txt"), test_list="test.txt", test_from="list",
                      depth_scale=1000.0, url="", sha256="", unpack_dir=Path("sync"))
params = load_params("params.yaml").preprocess
preprocess_folder(folder, work, work / "unused", work / "unused", work / "processed", params)
"""


def _frame(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A cheap frame: a sloped floor, a few boxes in front, shading, noise; depth in mm with holes."""
    rng = np.random.default_rng(i)
    rows = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    depth = np.broadcast_to(1.0 + 6.0 * (1.0 - rows) ** 2, (H, W)).copy()  # metres, far at the top
    for _ in range(3):
        y, x = rng.integers(0, H - 120), rng.integers(0, W - 160)
        depth[y : y + rng.integers(60, 200), x : x + rng.integers(80, 240)] = rng.uniform(0.8, 4.0)
    tint = rng.uniform(0.5, 1.0, 3).astype(np.float32)
    rgb = np.clip(255 * (1.2 / depth)[..., None] * tint + rng.normal(0, 3, (H, W, 3)), 0, 255).astype(np.uint8)
    mm = np.round(depth * 1000).astype(np.uint16)
    mm[rng.random((H, W)) < 0.05] = 0  # Kinect holes
    mm[:, :40] = 0  # the unregistered border of the sync frames
    return rgb, mm


def _write(args: tuple[Path, int, str]) -> str:
    root, i, scene = args
    rgb, mm = _frame(i)
    (root / scene).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(root / scene / f"rgb_{i:05d}.jpg", quality=95)
    Image.fromarray(mm).save(root / scene / f"sync_depth_{i:05d}.png")
    return f"/{scene}/rgb_{i:05d}.jpg /{scene}/sync_depth_{i:05d}.png 518.8579"


def generate(work: Path, n: int) -> tuple[int, int]:
    """Writes the frames and the two lists; returns (train pairs, test pairs)."""
    n_test = max(1, n // 10)
    scene = [f"{'bathroom' if i >= n - n_test else 'kitchen'}_{i // PER_SCENE:04d}" for i in range(n)]
    jobs = [(work / "sync", i, scene[i]) for i in range(n)]
    with ProcessPoolExecutor(default_workers()) as pool:
        lines = list(pool.map(_write, jobs, chunksize=16))
    (work / "train.txt").write_text("\n".join(lines[: n - n_test]) + "\n")
    (work / "test.txt").write_text("\n".join(lines[n - n_test :]) + "\n")
    return n - n_test, n_test


def bare_decode(work: Path) -> float:
    """Frames/s of a plain single-threaded decode of every listed pair."""
    lines = [ln.split() for f in ("train.txt", "test.txt") for ln in (work / f).read_text().splitlines()]
    start = time.perf_counter()
    for rgb, depth, _ in lines:
        np.asarray(Image.open(work / "sync" / rgb.lstrip("/")).convert("RGB"))
        np.asarray(Image.open(work / "sync" / depth.lstrip("/")))
    return len(lines) / (time.perf_counter() - start)


def pool_decode(work: Path, size: tuple[int, int]) -> float:
    """Frames/s of preprocess's own decode-and-resize in its thread pool, writing nothing."""
    from pipeline.data.folder import FolderFiles, load, ordered_map
    from pipeline.data.pairs import read_pairs

    files = FolderFiles(work / "sync", work / "train.txt", 1000.0, default_workers())
    pairs = read_pairs(files.list_path, files.root)
    start = time.perf_counter()
    for _ in ordered_map(lambda p: load(files, p, size), pairs, files.workers):
        pass
    return len(pairs) / (time.perf_counter() - start)


def main() -> None:
    """Generates the set, times the bare decode and preprocess, prints the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp", help="where the temporary files go (needs ~2.5 GB free for 3000)")
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    add_record_flag(ap, "preprocess_folder")
    args = ap.parse_args()
    rec = Recording.begin("preprocess_folder", args.record)
    work = Path(tempfile.mkdtemp(prefix="nyu_folder_bench_", dir=args.dir))
    try:
        t = time.perf_counter()
        n_train, n_test = generate(work, args.frames)
        gen_s = time.perf_counter() - t
        files_mb = sum(p.stat().st_size for p in (work / "sync").rglob("*")) / 1e6
        print(f"generated {args.frames} pairs ({files_mb:.0f} MB) in {gen_s:.0f} s", flush=True)
        bare_fps = bare_decode(work)
        print(f"bare decode loop (1 thread): {bare_fps:.1f} frames/s", flush=True)
        from pipeline.config import load_params

        pre = load_params(REPO / "params.yaml").preprocess
        pool_fps = pool_decode(work, (pre.height, pre.width))
        print(f"decode + resize in the pool, nothing written: {pool_fps:.1f} frames/s", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, work], cwd=REPO, check=True)
        seconds = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux; the child only
        out_mb = sum(p.stat().st_size for p in (work / "processed").iterdir()) / 1e6
        fps = args.frames / seconds
        print(f"preprocess: {seconds:.1f} s, {fps:.1f} frames/s, peak RSS {peak_kb / 1024:.0f} MB", flush=True)
        result = {
            "frames": args.frames,
            "train_pairs": n_train,
            "test_pairs": n_test,
            "files_mb": round(files_mb),
            "processed_mb": round(out_mb),
            "cores": len(os.sched_getaffinity(0)),
            "workers": default_workers(),
            "bare_decode_fps": round(bare_fps, 1),
            "pool_decode_resize_fps": round(pool_fps, 1),
            "preprocess_fps": round(fps, 1),
            "ratio": round(fps / bare_fps, 3),
            "preprocess_s": round(seconds, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1),
        }
        rec.finish(result)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
