"""One training epoch and one validation pass, on a resident or streamed split.

Nothing in the step waits for the device: the loss is summed on the device and read
back once every `SYNC_EVERY` steps (progress bar, non-finite check) and at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from pipeline.config import EvalParams
from pipeline.errors import PipelineError
from pipeline.losses import LossFn
from pipeline.metrics import METRIC_NAMES, count_nonfinite, protocol_metrics_torch
from pipeline.training.align import AlignTerm
from pipeline.training.device_data import TrainingSplit, augment
from pipeline.training.distributed import DistContext, all_reduce_

log = logging.getLogger(__name__)

# Host syncs per epoch = steps / SYNC_EVERY: rare enough not to stall the GPU queue,
# frequent enough for a live progress bar and an early stop on a NaN.
SYNC_EVERY = 10


@dataclass(frozen=True)
class Trainer:
    """What a step needs. `model` is what the step calls (maybe DDP/compiled); `net` the bare UNet."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: LossFn
    device: torch.device
    amp: bool  # bf16 autocast (train.amp resolved for the device)
    channels_last: bool
    protocol: EvalParams  # validation scores eval's crop and depth range, as the test does
    align: AlignTerm | None = None  # loss.align's term; None (weight 0): the depth loss alone, as before it existed

    def autocast(self) -> torch.autocast:
        """bf16 autocast when `amp` (train.amp: bf16, or auto on CUDA); a no-op context otherwise."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def layout(self, rgb: torch.Tensor) -> torch.Tensor:
        """The input in the model's memory format (channels_last or as is)."""
        return rgb.contiguous(memory_format=torch.channels_last) if self.channels_last else rgb


@dataclass(frozen=True)
class EpochStats:
    """What one training epoch measured."""

    loss: float  # mean training (depth) loss over all ranks' steps
    images: int  # images seen by all ranks
    seconds: float
    align_loss: float | None = None  # mean alignment-term loss over all ranks' steps; None: the term is off


def optimise(tr: Trainer, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """One forward, backward and optimiser step on a ready batch; returns the depth loss (on the device).

    Args:
        tr: the model, optimiser, schedule and loss.
        rgb: (B, 3, H, W) in [0, 1].
        depth: (B, 1, H, W) metres.
    """
    return optimise_step(tr, rgb, depth)[0]


def optimise_step(tr: Trainer, rgb: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`optimise`, also returning the alignment term's loss (None without it); both detached, on the device.

    With the term the step minimises depth loss + `loss.align.weight` x align loss; without
    it the step is exactly the depth loss's (no extra operation, no random draw).
    """
    align = None
    with tr.autocast():
        pred = tr.model(tr.layout(rgb))  # (B, 1, H, W) metres, float32
        loss = tr.loss_fn(pred, depth, rgb)
        total = loss
        if tr.align is not None:
            align = tr.align.loss(tr.net, tr.layout)  # type: ignore[arg-type]  # net is the bare DepthNet
            total = loss + tr.align.weight * align
    tr.optimizer.zero_grad(set_to_none=True)
    total.backward()
    tr.optimizer.step()
    tr.scheduler.step()
    return loss.detach(), None if align is None else align.detach()


class NonFiniteLossError(PipelineError):
    """The training loss became NaN or infinite."""


def _raise_non_finite(epoch: int, step: int, steps: int) -> None:
    raise NonFiniteLossError(
        f"train: the loss became NaN/inf at epoch {epoch}, step {step + 1} of {steps}; "
        "lower train.lr (or set train.amp: off) and re-run"
    )


def train_epoch(
    tr: Trainer, data: TrainingSplit, batches: torch.Tensor, gen: torch.Generator, ctx: DistContext,
    epoch: int, do_augment: bool = True,
) -> EpochStats:  # fmt: skip
    """Runs the optimiser over this rank's `batches` (steps, B) of `data`.

    Raises:
        PipelineError: the loss is not finite (checked every `SYNC_EVERY` steps, on all ranks alike).
    """
    tr.model.train()
    steps, B = batches.shape
    dev = tr.device
    loss_sum = torch.zeros((), device=dev)
    align_sum = torch.zeros((), device=dev)
    first_bad = torch.full((), steps, device=dev, dtype=torch.long)  # `steps` = none yet
    bar = tqdm(total=steps, desc=f"epoch {epoch}", unit="step", leave=False, disable=not ctx.is_main)
    start = time.perf_counter()
    for step, (rgb, depth) in enumerate(data.batches(batches)):  # (B, 3, H, W), (B, 1, H, W)
        if do_augment:
            rgb, depth = augment(rgb, depth, gen)
        loss, align = optimise_step(tr, rgb, depth)
        loss_sum += loss
        if align is not None:
            align_sum += align
            loss = loss + align  # the non-finite check covers the term too
        first_bad = torch.minimum(first_bad, torch.where(torch.isfinite(loss), steps, step))
        if (step + 1) % SYNC_EVERY and step + 1 < steps:
            continue
        # The only host sync: sum the losses and the earliest bad step over ranks.
        total = all_reduce_(loss_sum.clone(), ctx).item()
        bad = int(all_reduce_(first_bad.clone(), ctx, op="min").item())
        if bad < steps:
            bar.close()
            _raise_non_finite(epoch, bad, steps)
        seen = (step + 1) * B * ctx.world_size
        bar.update(step + 1 - bar.n)
        bar.set_postfix(
            loss=f"{total / ((step + 1) * ctx.world_size):.4f}", img_s=f"{seen / (time.perf_counter() - start):.1f}"
        )
    bar.close()
    seconds = time.perf_counter() - start
    n = steps * ctx.world_size
    align_loss = all_reduce_(align_sum, ctx).item() / n if tr.align is not None else None
    return EpochStats(loss=total / n, images=steps * B * ctx.world_size, seconds=seconds, align_loss=align_loss)


@torch.no_grad()
def validate(tr: Trainer, data: TrainingSplit, batch_size: int, ctx: DistContext) -> dict[str, float]:
    """Validation loss and the nine metrics (per image, then averaged) on the whole split.

    Each rank scores every world_size-th image; sums are reduced over ranks. Metrics
    use the filled depth at training resolution, inside `eval.crop` (scaled to that
    resolution) and `eval`'s depth range: the region evaluation scores, so the best
    epoch is chosen on what the test reports.

    Returns:
        {"val_loss": float, "val_<metric>": float for every METRIC_NAME}.
    """
    tr.net.eval()
    M = len(METRIC_NAMES)
    # loss*n, n, metric sums, metric counts, non-finite predicted pixels
    sums = torch.zeros(3 + 2 * M, device=tr.device, dtype=torch.float64)
    idx = torch.arange(ctx.rank, len(data), ctx.world_size, device=tr.device)
    chunks = idx.split(batch_size)
    for chunk, (rgb, depth) in zip(chunks, data.batches(chunks), strict=True):  # (b, 3, H, W), (b, 1, H, W)
        with tr.autocast():
            pred = tr.net(tr.layout(rgb))  # (b, 1, H, W)
        loss = tr.loss_fn(pred, depth, rgb)
        sums[-1] += count_nonfinite(pred)  # replaced by protocol_metrics_torch, as in evaluation
        p = tr.protocol
        per = protocol_metrics_torch(pred.float(), depth, p.min_depth, p.max_depth, crop=p.crop)
        vals = torch.stack([per[k] for k in METRIC_NAMES]).double()  # (M, b); NaN: no valid pixel
        ok = ~torch.isnan(vals)
        sums[0] += loss.double() * len(chunk)
        sums[1] += len(chunk)
        sums[2 : 2 + M] += torch.where(ok, vals, 0.0).sum(1)
        sums[2 + M : 2 + 2 * M] += ok.sum(1)
    s = all_reduce_(sums, ctx).tolist()
    if s[-1] and ctx.is_main:
        log.warning(
            "validation: %d predicted pixel(s) were NaN or infinite; scored as the depth range's ends", int(s[-1])
        )
    out = {"val_loss": s[0] / s[1] if s[1] else float("nan")}
    for i, name in enumerate(METRIC_NAMES):
        out[f"val_{name}"] = s[2 + i] / s[2 + M + i] if s[2 + M + i] else float("nan")
    return out
