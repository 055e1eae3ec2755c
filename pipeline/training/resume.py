"""The resume checkpoint (`paths.resume_checkpoint`): what it holds, when it applies, writing it.

Written atomically every epoch; a run started again with the same training params
(`training_fingerprint`) continues after the last finished epoch, bit for bit.

It holds plain types and tensors only, so it loads with `torch.load(weights_only=True)`
(no pickled code runs on load): numpy's RNG key is stored as a tensor, generator
states are uint8 tensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.config import Params, flatten, to_yaml_dict
from pipeline.errors import PipelineError
from pipeline.io import atomic_path

if TYPE_CHECKING:
    from pipeline.training.loop import Trainer

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class RunState:
    """What changes from epoch to epoch and goes into the resume checkpoint."""

    epoch: int = 0  # the last finished epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # one train-log row per epoch
    best: dict[str, Any] | None = None  # {"epoch", "value", "val_metrics", "state"}


def training_fingerprint(params: Params, data_fingerprint: str = "") -> dict[str, Any]:
    """The params that change what training computes, as a nested dict.

    In: model, loss, train, the training resolution, the data source and the region
    validation scores (eval's crop and depth range, which pick the best epoch), plus a
    fingerprint of the processed data (so re-splitting the data never resumes an old
    run). Out: paths, the rest of eval, mlflow and train.data, which change no weight.
    """
    return {
        "model": to_yaml_dict(params.model),
        "loss": to_yaml_dict(params.loss),
        # train.data only moves the data (resident or streamed, bit-identical batches):
        # a run may resume with the other placement.
        "train": {k: v for k, v in to_yaml_dict(params.train).items() if k != "data"},
        "preprocess": {"height": params.preprocess.height, "width": params.preprocess.width},
        # Validation scores the region evaluation scores: it decides which epoch is best.
        "eval": {"crop": params.eval.crop, "min_depth": params.eval.min_depth, "max_depth": params.eval.max_depth},
        "data": {"source": params.data.source, "fingerprint": data_fingerprint},
    }


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """SHA-256 of a `training_fingerprint` (key order does not matter)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def capture_rng(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every RNG state the run draws from, as plain types and tensors."""
    py_state = random.getstate()
    np_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]  # legacy=True: a tuple
    state: dict[str, Any] = {
        "python": list(py_state[1]),
        "python_gauss": py_state[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),  # (624,) MT19937 key
        "numpy_rest": [int(np_state[2]), int(np_state[3]), float(np_state[4])],  # pos, has_gauss, gauss
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    state.update({f"gen_{name}": g.get_state() for name, g in generators.items()})
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Puts back the RNG states saved by `capture_rng`."""
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    pos, has_gauss, gauss = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state[f"gen_{name}"])


def checkpoint_state(
    tr: Trainer, state: RunState, params: Params, fingerprint: dict[str, Any], gens: dict[str, torch.Generator]
) -> dict[str, Any]:
    """Everything `restore` needs to continue after `state.epoch`, as plain types and tensors."""
    return {
        "params_hash": fingerprint_hash(fingerprint),
        "fingerprint": fingerprint,
        "params": to_yaml_dict(params),
        "epoch": state.epoch,
        "model": {k: v.detach().cpu() for k, v in tr.net.state_dict().items()},
        "optimizer": tr.optimizer.state_dict(),
        "scheduler": tr.scheduler.state_dict(),
        "rng": capture_rng(gens),
        "history": state.history,
        "best": state.best,
    }


def restore(ckpt: dict[str, Any], tr: Trainer, gens: dict[str, torch.Generator]) -> RunState:
    """Puts a `checkpoint_state` back into the trainer and generators; returns the run state."""
    tr.net.load_state_dict(ckpt["model"])
    tr.optimizer.load_state_dict(ckpt["optimizer"])
    tr.scheduler.load_state_dict(ckpt["scheduler"])
    # Every epoch reseeds its generators anyway (`reseed_epoch`); restoring the saved
    # states also covers any draw made outside the epoch loop.
    restore_rng(ckpt["rng"], gens)
    return RunState(epoch=ckpt["epoch"], history=list(ckpt["history"]), best=ckpt["best"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Writes the checkpoint atomically: a kill mid-write leaves the previous one intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT_VERSION, **state}, tmp)


def load_resumable(path: str | Path, fingerprint: dict[str, Any], epochs: int) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None (with a log line saying why) to start fresh.

    Raises:
        PipelineError: the file exists but cannot be read as a checkpoint.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged or foreign file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PipelineError(f"{path}: unreadable checkpoint ({first}); delete it to start training afresh") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        log.info("%s: not a format-%d resume checkpoint; starting fresh", path, FORMAT_VERSION)
        return None
    if ckpt["params_hash"] != fingerprint_hash(fingerprint):
        changed = _diff(ckpt["fingerprint"], fingerprint)
        log.info("%s: made with other training params (%s); starting fresh", path, changed)
        return None
    if ckpt["epoch"] >= epochs:
        # A finished run is not resumed: DVC re-runs train only when something changed
        # (code included), and handing back the old weights would hide that change.
        log.info("%s: records a finished run (epoch %d of %d); starting fresh", path, ckpt["epoch"], epochs)
        return None
    log.info("resuming from %s after epoch %d of %d", path, ckpt["epoch"], epochs)
    return ckpt


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`train.lr: 0.001 -> 0.01, ...` for the keys whose values differ."""
    a, b = flatten(old), flatten(new)
    changes = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    return ", ".join(changes) or "same values, different hash"
