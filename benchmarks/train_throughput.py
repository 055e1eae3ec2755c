"""Training-loop throughput against a bare optimiser step (run on demand; not a test).

    python benchmarks/train_throughput.py                       # params.yaml model and batch, 240x320
    python benchmarks/train_throughput.py --base-channels 8 --batch-size 8 --repeats 3
    python benchmarks/train_throughput.py --encoder resnet18    # a timm backbone (random init)

Times the real epoch loop (`pipeline.training.loop.train_epoch`: gather from the device-
resident split, augmentation, step, loss accumulation, progress bar) on a synthetic
in-memory dataset, and a bare forward+backward+optimiser step on one batch already in
memory, on the current device. Their ratio is the loop's efficiency: ~1 means the data
path costs nothing next to the model. Each is timed `--repeats` times, interleaved, and
the fastest kept (other load on the machine only ever slows a run down). The last line
printed is a JSON object: device, loop_images_per_s, bare_images_per_s, ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.config import load_params  # noqa: E402
from pipeline.training.device_data import (  # noqa: E402
    DeviceSplit,
    augment,
    epoch_batches,
    gather_batch,
    to_device_split,
)
from pipeline.training.distributed import DistContext, resolve_device  # noqa: E402
from pipeline.training.loop import Trainer, optimise, train_epoch  # noqa: E402
from pipeline.training.seeding import configure_determinism, seed_everything  # noqa: E402
from pipeline.training.train import build_trainer  # noqa: E402


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml", help="params file (model/train defaults)")
    ap.add_argument("--batch-size", type=int, help="default: train.batch_size")
    ap.add_argument("--base-channels", type=int, help="default: model.base_channels")
    ap.add_argument("--depth", type=int, help="default: model.depth")
    ap.add_argument("--encoder", help="unet or a timm backbone (random init); default: model.encoder")
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--images", type=int, default=64, help="synthetic training images (one epoch)")
    ap.add_argument("--epochs", type=int, default=1, help="timed loop epochs per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default=None, help="auto | cuda | mps | cpu (default: train.device)")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's); 1 is steadiest on a shared CPU")
    return ap.parse_args()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall-clock and process CPU time of a block.

    On a CPU shared with other jobs, the wall clock also counts time spent waiting for
    a core; CPU time mostly does not.
    """

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _time_loop(tr: Trainer, data: DeviceSplit, batch: int, epochs: int, augment_on: bool,
               gen: torch.Generator) -> tuple[float, float]:  # fmt: skip
    """(images/s by wall clock, by CPU time) of the real epoch loop."""
    ctx = DistContext()
    images = 0
    with Timer() as t:
        for _ in range(epochs):
            stats = train_epoch(tr, data, epoch_batches(len(data), batch, ctx, gen), gen, ctx, 0, augment_on)
            images += stats.images  # train_epoch ends with a device sync
    return images / t.wall, images / t.cpu


def _time_bare(tr: Trainer, rgb: torch.Tensor, depth: torch.Tensor, steps: int) -> tuple[float, float]:
    """(images/s by wall clock, by CPU time) of forward+backward+step on one batch ready on the device."""
    tr.model.train()
    _sync(tr.device)
    with Timer() as t:
        for _ in range(steps):
            loss = optimise(tr, rgb, depth)
        loss.item()  # waits for the device, like the loop's final sync
    return steps * rgb.shape[0] / t.wall, steps * rgb.shape[0] / t.cpu


def main() -> None:
    """Builds the model and a synthetic dataset, times both paths, prints the JSON line."""
    a = _args()
    params = load_params(a.params)
    # Random init: the timing needs no pretrained weights (build_trainer is given none).
    model = dataclasses.replace(params.model, pretrained=False, weights=None, **{k: v for k, v in
                                (("base_channels", a.base_channels), ("depth", a.depth), ("encoder", a.encoder))
                                if v is not None})  # fmt: skip
    tp = dataclasses.replace(params.train, batch_size=a.batch_size or params.train.batch_size,
                             device=a.device or params.train.device)  # fmt: skip
    pre = dataclasses.replace(params.preprocess, height=a.height, width=a.width)
    params = dataclasses.replace(params, model=model, train=tp, preprocess=pre)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(tp.device)
    configure_determinism(tp.deterministic, device)
    seed_everything(tp.seed)
    g = torch.Generator().manual_seed(0)
    rgb_host = torch.randint(0, 256, (a.images, a.height, a.width, 3), dtype=torch.uint8, generator=g)
    depth_host = 0.5 + 9 * torch.rand(a.images, a.height, a.width, generator=g)
    data = to_device_split(rgb_host, depth_host, device)
    steps = len(data) // tp.batch_size
    tr = build_trainer(params, {"rgb_mean": [0.5] * 3, "rgb_std": [0.25] * 3}, device, DistContext(), steps)
    gen = torch.Generator(device=device).manual_seed(0)
    rgb, depth = augment(*gather_batch(data, torch.arange(tp.batch_size, device=device)), gen)
    print(f"device {device}; model encoder {model.encoder} base_channels {model.base_channels} depth {model.depth}; "
          f"{a.height}x{a.width}, batch {tp.batch_size}, {steps} steps/epoch; amp {tr.amp}", flush=True)  # fmt: skip
    # Warm-up of both paths: allocator, cuDNN autotuning, compilation, first-touch of the data.
    _time_bare(tr, rgb, depth, 2)
    _time_loop(tr, data, tp.batch_size, 1, not a.no_augment, gen)
    loop, bare = [], []
    for r in range(a.repeats):
        loop.append(_time_loop(tr, data, tp.batch_size, a.epochs, not a.no_augment, gen))
        bare.append(_time_bare(tr, rgb, depth, steps * a.epochs))
        print(f"repeat {r + 1}: loop {loop[-1][0]:.2f} img/s, bare {bare[-1][0]:.2f} img/s "
              f"(by CPU time: {loop[-1][1]:.2f}, {bare[-1][1]:.2f})", flush=True)  # fmt: skip
    best_loop, best_bare = max(v[0] for v in loop), max(v[0] for v in bare)
    if device.type == "cpu":
        cpu_ratio = max(v[1] for v in loop) / max(v[1] for v in bare)
        print(f"ratio by CPU time (robust to other jobs on a shared CPU): {cpu_ratio:.4f}")
    result = {"device": str(device), "encoder": model.encoder, "loop_images_per_s": round(best_loop, 3),
              "bare_images_per_s": round(best_bare, 3), "ratio": round(best_loop / best_bare, 4)}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
