"""Shared measurement helpers of the benchmarks: the model and data they time, and the timers.

Used by `train_throughput.py` and `gpu_check.py`, so both time the loop and the bare
step the same way. Not a test; nothing here asserts.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when run as a script

from pipeline.config import Params  # noqa: E402
from pipeline.training.allocator import keep_freed_memory
from pipeline.training.device_data import (  # noqa: E402
    TrainingSplit,
    augment,
    epoch_batches,
    gather_batch,
    to_device_split,
)
from pipeline.training.distributed import DistContext  # noqa: E402
from pipeline.training.loop import Trainer, optimise, train_epoch  # noqa: E402
from pipeline.training.seeding import seed_everything  # noqa: E402
from pipeline.training.train import build_trainer  # noqa: E402

# The processed data's summary the model's input normalisation is built from.
FLAT_SUMMARY = {"rgb_mean": [0.5] * 3, "rgb_std": [0.25] * 3}


def sync(device: torch.device) -> None:
    """Waits for the device's queued work, so a wall clock measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall-clock and process CPU time of a block (CPU time mostly ignores other jobs on a shared CPU)."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def with_overrides(params: Params, **sections: dict) -> Params:
    """`params` with some fields of some sections replaced (`model={"base_channels": 8}`)."""
    changes = {name: dataclasses.replace(getattr(params, name), **values) for name, values in sections.items()}
    return dataclasses.replace(params, **changes)


def synthetic_split(n: int, h: int, w: int, device: torch.device, seed: int = 0) -> TrainingSplit:
    """A device-resident split of random images and depths in 0.5..9.5 m."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)  # (N, H, W, 3)
    depth = 0.5 + 9 * torch.rand(n, h, w, generator=g)  # (N, H, W) metres
    return to_device_split(rgb, depth, device)


def trainer_for(params: Params, device: torch.device, steps: int) -> Trainer:
    """The training step's model, optimiser, schedule and loss, seeded, as `train` builds them (allocator too)."""
    if device.type == "cpu":
        keep_freed_memory()
    seed_everything(params.train.seed)
    return build_trainer(params, FLAT_SUMMARY, device, DistContext(), steps)


def ready_batch(data: TrainingSplit, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented batch already on the device, for the bare step."""
    gen = torch.Generator(device=device).manual_seed(0)
    first = torch.arange(batch, device=device)
    return augment(*gather_batch(data, first), gen)  # type: ignore[arg-type]  # a DeviceSplit


def time_loop(
    tr: Trainer, data: TrainingSplit, batch: int, gen: torch.Generator, do_augment: bool, steps: int | None = None
) -> Timer:
    """One epoch of the real loop (`train_epoch`: batches, augmentation, step, loss sums, progress bar).

    `steps` cuts the epoch to its first batches (None: all of them).
    """
    ctx = DistContext()
    batches = epoch_batches(len(data), batch, ctx, gen)[:steps]  # (steps, B)
    with Timer() as t:
        train_epoch(tr, data, batches, gen, ctx, 0, do_augment)  # ends with a host sync
    return t


def warm_up(tr: Trainer, data: TrainingSplit, batch: int, gen: torch.Generator, do_augment: bool) -> None:
    """One step of the real loop (a one-batch epoch), which warms the bare step as well.

    Both paths run the same forward, backward and optimiser kernels on the same shapes,
    so one step fills the allocator's cache, creates the oneDNN/cuDNN primitives (and
    autotunes them) and touches the weights for both; the loop's own extras (gather,
    augmentation, progress bar) run in it too. A full warm-up epoch per path cost ~4
    CPU steps where 1 does the job (issue 12 section 4: the benchmark's runtime).
    """
    time_loop(tr, data, batch, gen, do_augment, steps=1)


def time_data_path(data: TrainingSplit, batch: int, gen: torch.Generator, do_augment: bool) -> Timer:
    """One epoch of the loop's own work without the optimiser: batches (gather or stream) and augmentation.

    What the loop adds to the bare step, timed alone: an upper bound on its cost per
    step (in the loop, streamed batches arrive while the step runs). Unlike the loop /
    bare ratio it is not the difference of two noisy ~10 s timings, so it stays
    readable on a CPU whose step times wander by 10 % from minute to minute.
    """
    ctx = DistContext()
    batches = epoch_batches(len(data), batch, ctx, gen)  # (steps, B)
    with Timer() as t:
        for rgb, depth in data.batches(batches):
            if do_augment:
                rgb, depth = augment(rgb, depth, gen)
        sync(rgb.device)
    return t


def time_bare(tr: Trainer, rgb: torch.Tensor, depth: torch.Tensor, steps: int) -> Timer:
    """`steps` forward+backward+optimiser steps on one batch ready on the device."""
    tr.model.train()
    sync(tr.device)
    with Timer() as t:
        for _ in range(steps):
            loss = optimise(tr, rgb, depth)
        loss.item()  # waits for the device, like the loop's final sync
    return t


@dataclass(frozen=True)
class Comparison:
    """Loop against bare step over interleaved repeats: medians, so one disturbed repeat moves nothing."""

    loop_images_per_s: float
    bare_images_per_s: float
    ratio: float  # median of the per-repeat loop/bare ratios
    cpu_ratio: float  # the same by process CPU time
    ratios: list[float]


def compare(
    run_loop: Callable[[], Timer],
    run_bare: Callable[[], Timer],
    images: int,
    repeats: int,
    report: Callable,
    warm: Callable[[], object] | None = None,
) -> Comparison:
    """Times loop and bare step alternately `repeats` times, after a warm-up.

    Interleaving puts any slow phase of the machine on both sides, and alternating which
    path runs first cancels an order effect; the per-repeat ratio compares two measurements
    seconds apart, and the median over repeats drops outliers (use an even `repeats`).
    `warm` is the warm-up (e.g. `warm_up`, one loop step); None runs each path once.
    """
    if warm is None:  # allocator, cuDNN autotuning, compilation, first touch
        run_bare(), run_loop()
    else:
        warm()
    loops, bares = [], []
    for r in range(repeats):
        # Alternate the order (loop first, then bare first): a path that always ran second
        # would inherit whatever the first left behind (allocator state, caches, clock
        # boost), and the ratio would carry that order effect as if it were the loop's cost.
        if r % 2 == 0:
            loops.append(run_loop())
            bares.append(run_bare())
        else:
            bares.append(run_bare())
            loops.append(run_loop())
        report(
            f"repeat {r + 1}/{repeats}: loop {images / loops[-1].wall:.2f} img/s, "
            f"bare {images / bares[-1].wall:.2f} img/s, ratio {bares[-1].wall / loops[-1].wall:.4f}"
        )
    ratios = [b.wall / lp.wall for lp, b in zip(loops, bares, strict=True)]
    cpu = [b.cpu / lp.cpu for lp, b in zip(loops, bares, strict=True) if lp.cpu > 0]
    return Comparison(
        loop_images_per_s=images / statistics.median(t.wall for t in loops),
        bare_images_per_s=images / statistics.median(t.wall for t in bares),
        ratio=statistics.median(ratios),
        cpu_ratio=statistics.median(cpu) if cpu else float("nan"),
        ratios=ratios,
    )
