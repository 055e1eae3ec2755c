"""Training-loop throughput against a bare optimiser step (run on demand; not a test).

    python benchmarks/train_throughput.py                       # params.yaml model and batch, 240x320
    python benchmarks/train_throughput.py --data stream         # the loop streaming from an HDF5 file
    python benchmarks/train_throughput.py --base-channels 8 --batch-size 8 --repeats 4
    python benchmarks/train_throughput.py --encoder resnet18    # a timm backbone (random init)

Times the real epoch loop (`pipeline.training.loop.train_epoch`: batches from the
device-resident split, or streamed from a processed HDF5 file by the DataLoader with
`--data stream`; augmentation, step, loss accumulation, progress bar) on synthetic
data, and a bare forward+backward+optimiser step on one batch already in memory, on
the current device. Their ratio is the loop's efficiency: ~1 means the data path costs
nothing next to the model. Loop and bare step are timed alternately `--repeats` times
after a one-step warm-up of the loop (which warms the bare step's kernels too), and
the median of the per-repeat ratios is reported, so one
disturbed repeat moves nothing (on a shared CPU the ratio by process CPU time is
printed as well). The loop's own work (batches and augmentation, no optimiser step) is
also timed alone: on a CPU whose step times wander by ~10 % between minutes, that
direct figure (`data_ms_per_step`, and the ratio it bounds, `ratio_bound`) is the
steadier one. The last line printed is a JSON object: device, data, loop_images_per_s,
bare_images_per_s, ratio, data_ms_per_step, ratio_bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
import timing  # noqa: E402

from benchmarks.record import Recording, add_record_flag  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.data.datasets import SplitWriter  # noqa: E402
from pipeline.training.distributed import resolve_device  # noqa: E402
from pipeline.training.seeding import configure_determinism  # noqa: E402
from pipeline.training.stream_data import open_stream_split  # noqa: E402


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (model/train defaults)")
    ap.add_argument("--batch-size", type=int, help="default: train.batch_size")
    ap.add_argument("--base-channels", type=int, help="default: model.base_channels")
    ap.add_argument("--depth", type=int, help="default: model.depth")
    ap.add_argument("--encoder", help="unet or a timm backbone (random init); default: model.encoder")
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--steps", type=int, default=2, help="steps per timed epoch (and per bare repeat)")
    ap.add_argument("--repeats", type=int, default=4, help="pairs of loop and bare timings (even: each order twice)")
    ap.add_argument("--data", choices=("device", "stream"), default="device", help="the loop's data path")
    ap.add_argument("--device", default=None, help="auto | cuda | mps | cpu (default: train.device)")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    add_record_flag(ap, "train_throughput")
    return ap.parse_args()


def _write_split(path: Path, data: timing.TrainingSplit) -> None:
    """The resident synthetic split as a processed HDF5 file, for the streamed loop."""
    rgb = data.rgb.permute(0, 2, 3, 1).cpu().numpy()  # type: ignore[attr-defined]  # (N, H, W, 3) uint8
    depth = data.depth[:, 0].cpu().numpy()  # type: ignore[attr-defined]  # (N, H, W) metres
    n, h, w, _ = rgb.shape
    with SplitWriter(path, n, h, w, "train", "synthetic") as out:
        for i in range(n):
            out.write(i, rgb[i], depth[i], depth[i], i + 1, f"room_{i:04d}", "room")


def main() -> None:
    """Builds the model and a synthetic dataset, times both paths, prints the JSON line."""
    a = _args()
    rec = Recording.begin("train_throughput", a.record)
    params = load_params(a.params)
    # Random init: the timing needs no pretrained weights (build_trainer is given none).
    model = {k: v for k, v in (("base_channels", a.base_channels), ("depth", a.depth), ("encoder", a.encoder))
             if v is not None} | {"pretrained": False, "weights": None}  # fmt: skip
    batch = a.batch_size or params.train.batch_size
    train = {"batch_size": batch, "device": a.device or params.train.device}
    params = timing.with_overrides(params, model=model, train=train,
                                   preprocess={"height": a.height, "width": a.width})  # fmt: skip
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(params.train.device)
    configure_determinism(params.train.deterministic, device)
    images = batch * a.steps
    data = timing.synthetic_split(images, a.height, a.width, device)
    tr = timing.trainer_for(params, device, a.steps)
    rgb, depth = timing.ready_batch(data, batch, device)
    with tempfile.TemporaryDirectory() as tmp:
        if a.data == "stream":
            _write_split(Path(tmp) / "train.h5", data)
            data = open_stream_split(Path(tmp) / "train.h5", device, world_size=1)
            print(f"streaming from an HDF5 file with {data.workers} loader worker(s)")  # type: ignore[attr-defined]
        m = params.model
        print(f"device {device}; model encoder {m.encoder} base_channels {m.base_channels} depth {m.depth}; "
              f"{a.height}x{a.width}, batch {batch}, {a.steps} steps per repeat; amp {tr.amp}; data {a.data}",
              flush=True)  # fmt: skip
        gen = torch.Generator(device=device).manual_seed(0)
        c = timing.compare(
            lambda: timing.time_loop(tr, data, batch, gen, not a.no_augment),
            lambda: timing.time_bare(tr, rgb, depth, a.steps),
            images, a.repeats, lambda line: print(line, flush=True),
            warm=lambda: timing.warm_up(tr, data, batch, gen, not a.no_augment),
        )  # fmt: skip
        data_s = statistics.median(timing.time_data_path(data, batch, gen, not a.no_augment).wall
                                   for _ in range(a.repeats)) / a.steps  # fmt: skip
    if device.type == "cpu":
        print(f"ratio by CPU time (robust to other jobs on a shared CPU): {c.cpu_ratio:.4f}")
    print(f"per-repeat ratios: {np.round(c.ratios, 4).tolist()}; median {c.ratio:.4f}")
    step_s = batch / c.bare_images_per_s
    bound = step_s / (step_s + data_s)
    share = 100 * data_s / step_s
    print(f"the loop's own work alone (batches + augmentation, no step): {1000 * data_s:.1f} ms per step, "
          f"{share:.2f} % of a bare step: ratio {bound:.4f} if none of it overlaps the step")  # fmt: skip
    result = {
        "device": str(device),
        "encoder": params.model.encoder,
        "data": a.data,
        "loop_images_per_s": round(c.loop_images_per_s, 3),
        "bare_images_per_s": round(c.bare_images_per_s, 3),
        "ratio": round(c.ratio, 4),
        "data_ms_per_step": round(1000 * data_s, 2),
        "ratio_bound": round(bound, 4),
    }
    rec.finish(result)


if __name__ == "__main__":
    main()
