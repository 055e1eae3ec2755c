"""`train(params) -> metrics`: the training run, resumable, single- or multi-process.

Outputs (rank 0 only): `paths.model` (best epoch by `train.best_metric`),
`<paths.models_dir>/checkpoints/last.pt` (resume checkpoint, every epoch) and
`paths.train_log` (one TSV row per epoch). All are written atomically.
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

from pipeline.config import Params, to_yaml_dict
from pipeline.data.datasets import read_summary
from pipeline.errors import PipelineError
from pipeline.io import sha256_file
from pipeline.losses import build_loss
from pipeline.metrics import HIGHER_IS_BETTER
from pipeline.model import UNet, UNetConfig, save_model
from pipeline.train import checkpoint as ckpt_io
from pipeline.train.device_data import DeviceSplit, epoch_batches, load_split_to_device
from pipeline.train.distributed import (
    DistContext,
    barrier,
    env_context,
    init_distributed,
    resolve_device,
    shutdown_distributed,
)
from pipeline.train.loop import NonFiniteLossError, Trainer, train_epoch, validate
from pipeline.train.optim import build_optimizer, build_scheduler
from pipeline.train.runlog import write_train_log
from pipeline.train.seeding import configure_determinism, reseed_epoch, seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    """The files training reads and writes, resolved against the repository root."""

    processed: Path
    model: Path
    last: Path
    train_log: Path

    @classmethod
    def from_params(cls, params: Params, root: Path) -> TrainPaths:
        """From `params.paths`; the resume checkpoint lives in `<models_dir>/checkpoints/`."""
        p = params.paths
        return cls(root / p.processed_dir, root / p.model, root / p.models_dir / "checkpoints" / "last.pt",
                   root / p.train_log)  # fmt: skip


@dataclass
class RunState:
    """What changes from epoch to epoch and goes into the resume checkpoint."""

    epoch: int = 0
    history: list[dict[str, Any]] | None = None
    best: dict[str, Any] | None = None  # {"epoch", "value", "val_metrics", "state"}

    def __post_init__(self) -> None:
        self.history = self.history or []


def _load_data(params: Params, paths: TrainPaths, device: torch.device) -> tuple[DeviceSplit, DeviceSplit, dict]:
    """Train and val splits on the device, checked against the params' resolution."""
    summary = read_summary(paths.processed)
    h, w = params.preprocess.height, params.preprocess.width
    UNetConfig.from_params(params.model).check_input_size(h, w)
    train_split = load_split_to_device(paths.processed / "train.h5", device)
    val_split = load_split_to_device(paths.processed / "val.h5", device)
    for name, split in (("train", train_split), ("val", val_split)):
        if split.hw != (h, w):
            raise PipelineError(
                f"{paths.processed / name}.h5: images are {split.hw[0]}x{split.hw[1]} but preprocess.height/width "
                f"say {h}x{w}; re-run `dvc repro preprocess`"
            )
    if len(val_split) == 0:
        raise PipelineError(f"{paths.processed / 'val.h5'}: no images; raise preprocess.val_fraction and re-run")
    return train_split, val_split, summary


def build_trainer(params: Params, summary: dict, device: torch.device, ctx: DistContext, steps: int) -> Trainer:
    """Model (on `device`, maybe DDP-wrapped and compiled), optimiser, per-step schedule and loss.

    Args:
        summary: the processed data's summary (its `rgb_mean`/`rgb_std` go into the model).
        steps: optimiser steps per epoch, for the schedule.
    """
    tp = params.train
    net = UNet(UNetConfig.from_params(params.model), summary["rgb_mean"], summary["rgb_std"]).to(device)
    # channels_last (NHWC): cuDNN's tensor-core kernels and oneDNN's CPU convolutions are
    # NHWC-native (~30% faster steps measured on the CPU); MPS stays NCHW, its NHWC
    # support is patchier.
    channels_last = device.type in ("cuda", "cpu")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(net, tp, device)
    model: torch.nn.Module = net
    if ctx.distributed:
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if tp.compile and device.type == "cuda":
        model = torch.compile(model)
    elif tp.compile:
        log.info("train.compile ignored on %s (CUDA only)", device.type)
    amp = tp.amp and device.type == "cuda"
    if tp.amp and not amp:
        log.info("train.amp ignored on %s: training in float32", device.type)
    return Trainer(model, net, optimizer, build_scheduler(optimizer, tp, steps), build_loss(params.loss), device,
                   amp, channels_last)  # fmt: skip


def _is_better(value: float, best: dict[str, Any] | None, metric: str) -> bool:
    if best is None or math.isnan(best["value"]):
        return True
    return value > best["value"] if metric in HIGHER_IS_BETTER else value < best["value"]


def _save_best(path: Path, net: torch.nn.Module, params: Params, best: dict[str, Any], device: torch.device) -> None:
    extra = {
        "params": to_yaml_dict(params),
        "epoch": best["epoch"],
        "val_metrics": best["val_metrics"],
        "best_metric": params.train.best_metric,
        "best_value": best["value"],
        "device": str(device),
        "torch_version": torch.__version__,
    }
    save_model(path, net, extra)


def _restore(ckpt: dict[str, Any], tr: Trainer, gens: dict[str, torch.Generator]) -> RunState:
    tr.net.load_state_dict(ckpt["model"])
    tr.optimizer.load_state_dict(ckpt["optimizer"])
    tr.scheduler.load_state_dict(ckpt["scheduler"])
    # Every epoch reseeds its generators anyway (`reseed_epoch`); restoring the saved
    # states also covers any draw made outside the epoch loop.
    ckpt_io.restore_rng(ckpt["rng"], gens)
    return RunState(epoch=ckpt["epoch"], history=list(ckpt["history"]), best=ckpt["best"])


def _checkpoint(tr: Trainer, state: RunState, params: Params, fingerprint: dict, gens: dict) -> dict[str, Any]:
    return {
        "params_hash": ckpt_io.fingerprint_hash(fingerprint),
        "fingerprint": fingerprint,
        "params": to_yaml_dict(params),
        "epoch": state.epoch,
        "model": {k: v.detach().cpu() for k, v in tr.net.state_dict().items()},
        "optimizer": tr.optimizer.state_dict(),
        "scheduler": tr.scheduler.state_dict(),
        "rng": ckpt_io.capture_rng(gens),
        "history": state.history,
        "best": state.best,
    }


def _metrics_of(row: dict[str, Any]) -> dict[str, float]:
    """A history row as tracker metrics: no epoch, no empty (unvalidated) cells."""
    return {k: v for k, v in row.items() if k != "epoch" and v is not None}


def _val_metrics(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k.startswith("val_")}


def _run_epoch(tr: Trainer, data: tuple[DeviceSplit, DeviceSplit], params: Params, ctx: DistContext,
               gens: dict[str, torch.Generator], epoch: int) -> dict[str, Any]:  # fmt: skip
    """Trains one epoch (and validates when due); returns its TSV row."""
    tp, (train_split, val_split) = params.train, data
    start = time.perf_counter()
    reseed_epoch(tp.seed, epoch, ctx.rank, gens)
    lr = tr.optimizer.param_groups[0]["lr"]  # at the epoch's first step
    batches = epoch_batches(len(train_split), tp.batch_size, ctx, gens["shuffle"])  # (steps, B)
    stats = train_epoch(tr, train_split, batches, gens["augment"], ctx, epoch, tp.augment)
    row: dict[str, Any] = {"epoch": epoch, "train_loss": stats.loss}
    if epoch % tp.val_every == 0 or epoch == tp.epochs:  # the last epoch always validates
        row.update(validate(tr, val_split, tp.batch_size, ctx, params.model.max_depth))
    row.update(lr=lr, images_per_s=stats.images / stats.seconds, seconds=time.perf_counter() - start)
    return row


def _finish_epoch(row: dict[str, Any], state: RunState, tr: Trainer, params: Params, paths: TrainPaths,
                  fingerprint: dict, gens: dict[str, torch.Generator], tracker: Any) -> None:  # fmt: skip
    """Rank 0: best model, TSV and resume checkpoint, in that order (each atomic)."""
    state.epoch = row["epoch"]
    state.history.append(row)
    metric = params.train.best_metric
    key = metric if metric == "val_loss" else f"val_{metric}"
    if key in row and _is_better(row[key], state.best, metric):
        state.best = {"epoch": state.epoch, "value": row[key], "val_metrics": _val_metrics(row),
                      "state": {k: v.detach().cpu().clone() for k, v in tr.net.state_dict().items()}}  # fmt: skip
        _save_best(paths.model, tr.net, params, state.best, tr.device)
    write_train_log(paths.train_log, state.history)
    ckpt_io.save_checkpoint(paths.last, _checkpoint(tr, state, params, fingerprint, gens))
    if tracker is not None:
        tracker.log_metrics(_metrics_of(row), step=state.epoch)
    shown = " ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch" and v is not None)
    log.info("epoch %d/%d: %s", state.epoch, params.train.epochs, shown)


def _start(params: Params, tr: Trainer, state: RunState, paths: TrainPaths, ctx: DistContext, tracker: Any) -> None:
    """Rank 0: set-up log lines, tracker params, and model.pt restored on resume."""
    tp = params.train
    log.info("device %s, world size %d: global batch %d (%d per rank); lr %g, not scaled with the global batch "
             "(adjust train.lr yourself when changing the number of ranks)", tr.device, ctx.world_size,
             tp.batch_size * ctx.world_size, tp.batch_size, tp.lr)  # fmt: skip
    if tracker is not None:
        tracker.log_params(params.to_flat_dict())
        tracker.set_tags({"device": str(tr.device), "world_size": str(ctx.world_size),
                          "global_batch": str(tp.batch_size * ctx.world_size), "resumed_from_epoch": str(state.epoch),
                          "torch": torch.__version__})  # fmt: skip
        # A resumed run starts a new MLflow run: give it the whole curve, not only the new epochs.
        tracker.log_metrics_history([{"epoch": r["epoch"], **_metrics_of(r)} for r in state.history])
    if state.best is not None:
        # DVC deletes its outputs before re-running a stage: put the best model back.
        net = UNet(tr.net.cfg)  # on the CPU, like the stored state; rgb stats come with the state
        net.load_state_dict(state.best["state"])
        _save_best(paths.model, net, params, state.best, tr.device)


def train(params: Params, repo_root: Path = Path("."), tracker: Any = None) -> dict[str, Any]:
    """Trains the U-Net on the processed train split, validating on val every `train.val_every` epochs.

    Resumes from `last.pt` when it was written by the same training params; runs under
    torchrun as DistributedDataParallel. Only rank 0 writes files and uses `tracker`.

    Args:
        params: all params (model, loss, train, preprocess, paths are read).
        repo_root: the folder `params.paths` are relative to.
        tracker: a `pipeline.tracking.Tracker` (`log_params`, `log_metrics`,
            `log_metrics_history`, `set_tags`), or None.

    Returns:
        {"best_epoch", "best_metric", "best_value", "best_val_metrics", "final" (last TSV row),
        "epochs", "resumed_from", "device", "world_size"}.

    Raises:
        PipelineError: missing or inconsistent data, an unavailable device, or a non-finite loss.
        ParamsError: a training resolution the model cannot take.
    """
    ctx = env_context()
    device = resolve_device(params.train.device, ctx.local_rank)
    configure_determinism(params.train.deterministic, device)
    init_distributed(ctx, device)
    try:
        return _train(params, Path(repo_root), tracker if ctx.is_main else None, ctx, device)
    finally:
        shutdown_distributed()


def _train(params: Params, root: Path, tracker: Any, ctx: DistContext, device: torch.device) -> dict[str, Any]:
    tp, paths = params.train, TrainPaths.from_params(params, root)
    train_split, val_split, summary = _load_data(params, paths, device)
    steps = len(train_split) // (tp.batch_size * ctx.world_size)
    if steps == 0:
        raise PipelineError(f"params: train.batch_size {tp.batch_size} x {ctx.world_size} rank(s) is more than the "
                            f"{len(train_split)} training images; lower train.batch_size")  # fmt: skip
    seed_everything(tp.seed)  # the model's initial weights
    tr = build_trainer(params, summary, device, ctx, steps)
    gens = {"shuffle": torch.Generator(device=device), "augment": torch.Generator(device=device)}
    fingerprint = ckpt_io.training_fingerprint(params, sha256_file(paths.processed / "summary.json"))
    ckpt = ckpt_io.load_resumable(paths.last, fingerprint, tp.epochs)
    state = _restore(ckpt, tr, gens) if ckpt else RunState()
    resumed_from = state.epoch
    if ctx.is_main:
        _start(params, tr, state, paths, ctx, tracker)
    for epoch in range(state.epoch + 1, tp.epochs + 1):
        try:
            row = _run_epoch(tr, (train_split, val_split), params, ctx, gens, epoch)
        except NonFiniteLossError as e:
            kept = f"{paths.last} keeps epoch {state.epoch}" if state.epoch else "no epoch finished"
            raise PipelineError(f"{e} ({kept}, the last good one)") from None
        if ctx.is_main:
            _finish_epoch(row, state, tr, params, paths, fingerprint, gens, tracker)
        else:
            state.epoch = epoch
    barrier(ctx)
    best = state.best or {}
    return {"best_epoch": best.get("epoch"), "best_metric": tp.best_metric, "best_value": best.get("value"),
            "best_val_metrics": best.get("val_metrics"), "final": state.history[-1] if state.history else None,
            "epochs": tp.epochs, "resumed_from": resumed_from, "device": str(device),
            "world_size": ctx.world_size}  # fmt: skip
