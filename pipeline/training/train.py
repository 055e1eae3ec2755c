"""The train stage: `run(params, root) -> metrics`, resumable, single- or multi-process.

Outputs (rank 0 only): `paths.model` (best epoch by `train.best_metric`),
`paths.resume_checkpoint` (every epoch), `paths.train_log` (one TSV row per epoch)
and `paths.run_id` (the MLflow run that evaluate and report reopen). All are written
atomically.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from pipeline import tracking
from pipeline.config import Params, PathsParams, to_yaml_dict
from pipeline.data.datasets import read_summary
from pipeline.errors import PipelineError
from pipeline.io import sha256_file
from pipeline.losses import build_loss
from pipeline.metrics import HIGHER_IS_BETTER
from pipeline.model import build_model, check_model, encoder_parameters, save_model
from pipeline.model.pretrained import encoder_state
from pipeline.tracking import Tracker
from pipeline.training import resume
from pipeline.training.align import build_align_term
from pipeline.training.allocator import keep_freed_memory
from pipeline.training.device_data import TrainingSplit, epoch_batches
from pipeline.training.distributed import (
    DistContext,
    barrier,
    env_context,
    init_distributed,
    resolve_device,
    shutdown_distributed,
)
from pipeline.training.loop import NonFiniteLossError, Trainer, train_epoch, validate
from pipeline.training.optim import build_optimizer, build_scheduler
from pipeline.training.placement import load_splits
from pipeline.training.resume import RunState
from pipeline.training.runlog import write_train_log, write_train_metrics
from pipeline.training.seeding import configure_determinism, reseed_epoch, seed_everything

log = logging.getLogger(__name__)

# Below this many images per process, batch statistics get noisy enough to hurt a network
# trained with batch norm (Wu & He, "Group Normalization", 2018: ImageNet error rises
# sharply from 8 images per batch down). A backbone's batch norm trains (batch 16 by default).
BN_MIN_BATCH = 8


@dataclass
class Run:
    """Everything one training run carries from epoch to epoch."""

    params: Params
    paths: PathsParams  # resolved against the run's root
    dist: DistContext
    trainer: Trainer
    train_split: TrainingSplit  # resident on the device or streamed from disk (train.data)
    val_split: TrainingSplit
    data_mode: str  # "device" | "stream", what train.data resolved to
    gens: dict[str, torch.Generator]  # "shuffle", "augment": on the device, reseeded every epoch
    fingerprint: dict[str, Any]  # what makes a resume checkpoint this run's (resume.training_fingerprint)
    tracker: Tracker  # a no-op on ranks > 0 and with MLflow off
    state: RunState


def run(params: Params, root: Path) -> dict[str, Any]:
    """Trains, and (rank 0) logs to a new MLflow run whose id goes to `paths.run_id`.

    Args:
        params: all params (model, loss, train, eval's crop and range, preprocess's size, paths).
        root: the folder `params.paths` are relative to (the repository, or DVC's
            temporary copy of it for a queued experiment).

    Returns:
        {"best_epoch", "best_metric", "best_value", "best_val_metrics", "final" (last TSV row),
        "epochs", "resumed_from", "device", "world_size"}.

    Raises:
        PipelineError: missing or inconsistent data, an unavailable device, or a non-finite loss.
        ParamsError: a training resolution the model cannot take.
    """
    paths = params.paths.resolve(root)
    if not env_context().is_main:  # under torchrun only rank 0 tracks, writes and logs progress
        logging.getLogger().setLevel(logging.WARNING)
        return train(params, paths, Tracker(), root)
    # The MLflow store is found from DVC_ROOT (the user's repo) before `root`, which for
    # a queued experiment is a temporary copy deleted afterwards.
    with tracking.start_run(params, root) as tracker:  # ends the run FINISHED, FAILED or KILLED
        result = train(params, paths, tracker, root)
        tracker.log_model(paths.model)  # state dict + config: loads at any image size
        # The MLflow model (pyfunc, registered): serves any image size, without this repository.
        tracker.log_servable_model(paths.model, params.mlflow.registered_model, step=result["best_epoch"] or 0)
        tracker.write_run_id(paths.run_id)
    return result


def train(params: Params, paths: PathsParams, tracker: Tracker, root: Path) -> dict[str, Any]:
    """The training loop behind `run`: resumes from `paths.resume_checkpoint` when it was this run's.

    `root` is what a relative `model.weights` is resolved against, like `paths`.
    """
    dist = env_context()
    device = resolve_device(params.train.device, dist.local_rank)
    configure_determinism(params.train.deterministic, device)
    if device.type == "cpu":
        keep_freed_memory()  # ~1.8x faster CPU steps at 240x320: the activations stop being re-faulted
    init_distributed(dist, device)
    try:
        r = _setup(params, paths, dist, device, tracker, root)
        return _loop(r)
    finally:
        shutdown_distributed()


def _load_data(
    params: Params, paths: PathsParams, device: torch.device, world_size: int
) -> tuple[dict[str, TrainingSplit], str, dict]:
    """Train and val splits (resident or streamed, per train.data), checked against the params' resolution."""
    summary = read_summary(paths.processed_dir)
    h, w = params.preprocess.height, params.preprocess.width
    check_model(params.model, h, w)
    splits, mode = load_splits(params.train.data, paths.processed_dir, device, world_size)
    for name, split in splits.items():
        if split.hw != (h, w):
            raise PipelineError(
                f"{paths.processed_dir / name}.h5: images are {split.hw[0]}x{split.hw[1]} but "
                f"preprocess.height/width say {h}x{w}; re-run `dvc repro preprocess`"
            )
    if len(splits["val"]) == 0:
        raise PipelineError(f"{paths.processed_dir / 'val.h5'}: no images; raise preprocess.val_fraction and re-run")
    return splits, mode, summary


def build_trainer(
    params: Params,
    summary: dict,
    device: torch.device,
    dist: DistContext,
    steps: int,
    encoder_init: dict[str, torch.Tensor] | None = None,
    align_data: Path | None = None,
) -> Trainer:
    """Model (on `device`, maybe DDP-wrapped and compiled), optimiser, per-step schedule and loss.

    Args:
        params: all params (model, loss, train, eval are read).
        summary: the processed data's summary (its `rgb_mean`/`rgb_std` go into the plain U-Net;
            a backbone keeps the normalisation of its weights).
        device: where the model lives.
        dist: this process's rank and world size.
        steps: optimiser steps per epoch, for the schedule.
        encoder_init: a pretrained backbone's weights (`pipeline.model.pretrained.encoder_state`).
        align_data: the alignment term's sequences (`paths.align_data`); read only when loss.align.weight > 0.
    """
    tp = params.train
    net = build_model(params.model, summary["rgb_mean"], summary["rgb_std"], encoder_init).to(device)
    _warn_small_batch_norm(net, tp.batch_size)
    # channels_last (NHWC): cuDNN's tensor-core kernels and oneDNN's CPU convolutions are
    # NHWC-native (~30% faster steps measured on the CPU); MPS stays NCHW, its NHWC
    # support is patchier.
    channels_last = device.type in ("cuda", "cpu")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
    optimizer = build_optimizer(net, tp, device, encoder_parameters(net))
    model: torch.nn.Module = net
    if dist.distributed:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if tp.compile:
        model = torch.compile(model)  # type: ignore[assignment]  # an OptimizedModule
    align = None
    if params.loss.align.weight > 0:
        if align_data is None:
            raise ValueError("build_trainer: loss.align.weight > 0 needs align_data (paths.align_data)")
        hw = (params.preprocess.height, params.preprocess.width)
        align = build_align_term(params.loss.align, align_data, hw, net, device)
    amp = uses_bf16(tp.amp, device)
    log.info("precision: %s on %s (train.amp: %s)", "bf16 autocast" if amp else "float32", device.type, tp.amp)
    return Trainer(
        model=model,
        net=net,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, tp, steps),
        loss_fn=build_loss(params.loss),
        device=device,
        amp=amp,
        channels_last=channels_last,
        protocol=params.eval,
        align=align,
    )


def uses_bf16(amp: str, device: torch.device) -> bool:
    """Whether `train.amp` means bf16 autocast on `device`: bf16 anywhere, auto on CUDA only."""
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def _warn_small_batch_norm(net: torch.nn.Module, batch_size: int) -> None:
    """A backbone's batch norm trains on batch statistics: say so when the batch is too small for them."""
    encoder = getattr(net, "encoder", None)
    has_bn = encoder is not None and any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    if has_bn and batch_size < BN_MIN_BATCH:
        log.warning(
            "train.batch_size %d per process: the backbone's batch norm trains on batch statistics, which get "
            "noisy below %d images; raise train.batch_size (README: Encoders)",
            batch_size,
            BN_MIN_BATCH,
        )


def _setup(
    params: Params, paths: PathsParams, dist: DistContext, device: torch.device, tracker: Tracker, root: Path
) -> Run:
    """Data on the device, the trainer, and the state to start from (fresh or resumed)."""
    tp = params.train
    splits, data_mode, summary = _load_data(params, paths, device, dist.world_size)
    train_split = splits["train"]
    steps = len(train_split) // (tp.batch_size * dist.world_size)
    if steps == 0:
        raise PipelineError(
            f"params: train.batch_size {tp.batch_size} x {dist.world_size} rank(s) is more than the "
            f"{len(train_split)} training images; lower train.batch_size"
        )
    fingerprint = resume.training_fingerprint(params, sha256_file(paths.processed_dir / "summary.json"))
    ckpt = resume.load_resumable(paths.resume_checkpoint, fingerprint, tp.epochs)
    # A resumed run takes every weight from its checkpoint: no pretrained weights to fetch.
    encoder_init = None if ckpt else encoder_state(params.model, root)
    seed_everything(tp.seed)  # the model's initial weights
    trainer = build_trainer(params, summary, device, dist, steps, encoder_init, paths.align_data)
    gens = {"shuffle": torch.Generator(device=device), "augment": torch.Generator(device=device)}
    state = resume.restore(ckpt, trainer, gens) if ckpt else RunState()
    r = Run(params, paths, dist, trainer, train_split, splits["val"], data_mode, gens, fingerprint, tracker, state)
    if dist.is_main:
        _start(r)
    return r


def _start(r: Run) -> None:
    """Rank 0: set-up log lines, tracker params, and model.pt restored on resume."""
    tp, world = r.params.train, r.dist.world_size
    log.info(
        "device %s, world size %d: global batch %d (%d per rank); lr %g, not scaled with the global batch "
        "(adjust train.lr yourself when changing the number of ranks)",
        r.trainer.device,
        world,
        tp.batch_size * world,
        tp.batch_size,
        tp.lr,
    )
    r.tracker.set_tags(
        {
            "device": str(r.trainer.device),
            "world_size": str(world),
            "global_batch": str(tp.batch_size * world),
            "train_data": r.data_mode,
            "resumed_from_epoch": str(r.state.epoch),
        }
    )
    r.tracker.log_splits(r.params, r.paths.processed_dir, ("train", "val"))  # the runs table's Dataset column
    # A resumed run starts a new MLflow run: give it the whole curve, not only the new epochs.
    r.tracker.log_metrics_history([{"epoch": row["epoch"], **_metrics_of(row)} for row in r.state.history])
    if r.state.best is not None:
        # DVC deletes its outputs before re-running a stage: put the best model back.
        net = build_model(r.params.model)  # on the CPU, like the stored state; rgb stats come with the state
        net.load_state_dict(r.state.best["state"])
        _save_best(r, net)


def _loop(r: Run) -> dict[str, Any]:
    """Epochs from the first unfinished one to `train.epochs`; returns the run's summary."""
    tp, resumed_from = r.params.train, r.state.epoch
    for epoch in range(r.state.epoch + 1, tp.epochs + 1):
        try:
            row = _run_epoch(r, epoch)
        except NonFiniteLossError as e:
            kept = f"{r.paths.resume_checkpoint} keeps epoch {r.state.epoch}" if r.state.epoch else "no epoch finished"
            raise PipelineError(f"{e} ({kept}, the last good one)") from None
        if r.dist.is_main:
            _finish_epoch(r, row)
        else:
            r.state.epoch = epoch
    barrier(r.dist)
    best = r.state.best or {}
    return {
        "best_epoch": best.get("epoch"),
        "best_metric": tp.best_metric,
        "best_value": best.get("value"),
        "best_val_metrics": best.get("val_metrics"),
        "final": r.state.history[-1] if r.state.history else None,
        "epochs": tp.epochs,
        "resumed_from": resumed_from,
        "device": str(r.trainer.device),
        "world_size": r.dist.world_size,
    }


def _run_epoch(r: Run, epoch: int) -> dict[str, Any]:
    """Trains one epoch (and validates when due); returns its TSV row."""
    tp = r.params.train
    start = time.perf_counter()
    reseed_epoch(tp.seed, epoch, r.dist.rank, r.gens)
    if r.trainer.align is not None:
        r.trainer.align.reseed(epoch, r.dist.rank)
    lr = r.trainer.optimizer.param_groups[0]["lr"]  # at the epoch's first step
    batches = epoch_batches(len(r.train_split), tp.batch_size, r.dist, r.gens["shuffle"])  # (steps, B)
    stats = train_epoch(r.trainer, r.train_split, batches, r.gens["augment"], r.dist, epoch, tp.augment)
    row: dict[str, Any] = {"epoch": epoch, "train_loss": stats.loss}
    if stats.align_loss is not None:  # MLflow: train/align_loss; a column of the train log
        row["train_align_loss"] = stats.align_loss
    if epoch % tp.val_every == 0 or epoch == tp.epochs:  # the last epoch always validates
        row.update(validate(r.trainer, r.val_split, tp.batch_size, r.dist))
    row.update(lr=lr, images_per_s=stats.images / stats.seconds, seconds=time.perf_counter() - start)
    return row


def _finish_epoch(r: Run, row: dict[str, Any]) -> None:
    """Rank 0: best model, TSV and resume checkpoint, in that order (each atomic)."""
    state, metric = r.state, r.params.train.best_metric
    state.epoch = row["epoch"]
    state.history.append(row)
    key = metric if metric == "val_loss" else f"val_{metric}"
    if key in row and _is_better(row[key], state.best, metric):
        state.best = {
            "epoch": state.epoch,
            "value": row[key],
            "val_metrics": {k: v for k, v in row.items() if k.startswith("val_")},
            "state": {k: v.detach().cpu().clone() for k, v in r.trainer.net.state_dict().items()},
        }
        _save_best(r, r.trainer.net)
    write_train_log(r.paths.train_log, state.history)
    write_train_metrics(r.paths.train_metrics, state.history)
    ckpt = resume.checkpoint_state(r.trainer, state, r.params, r.fingerprint, r.gens)
    resume.save_checkpoint(r.paths.resume_checkpoint, ckpt)
    r.tracker.log_metrics(_metrics_of(row), step=state.epoch)
    if "val_loss" in row:  # depth panels of fixed validation images for the UI's image grid, step = epoch
        val_file, n_images = r.paths.processed_dir / "val.h5", r.params.mlflow.val_images
        r.tracker.log_val_panels(r.trainer.net, val_file, n_images, state.epoch)
    shown = " ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch" and v is not None)
    log.info("epoch %d/%d: %s", state.epoch, r.params.train.epochs, shown)


def _is_better(value: float, best: dict[str, Any] | None, metric: str) -> bool:
    if best is None or math.isnan(best["value"]):
        return True
    return value > best["value"] if metric in HIGHER_IS_BETTER else value < best["value"]


def _save_best(r: Run, net: torch.nn.Module) -> None:
    best = r.state.best
    assert best is not None
    extra = {
        "params": to_yaml_dict(r.params),
        "epoch": best["epoch"],
        "val_metrics": best["val_metrics"],
        "best_metric": r.params.train.best_metric,
        "best_value": best["value"],
        "device": str(r.trainer.device),
        "torch_version": torch.__version__,
    }
    save_model(r.paths.model, net, extra)


def _metrics_of(row: dict[str, Any]) -> dict[str, float]:
    """A history row as tracker metrics: no epoch, no empty (unvalidated) cells."""
    return {k: v for k, v in row.items() if k != "epoch" and v is not None}
