"""The pose_reference stage: `run(params, root)`, the methods that never read the trained model.

Intensities with the sensor's depth (classical photometric alignment), the encoder at
its untrained initial weights (the control), standing still and Open3D's RGB-D odometry
are scored here, in a stage without the model among its dependencies: an experiment that
changes only the loss or training re-runs the `pose` stage's model variants, and DVC
restores these from its cache. `pose` merges both into one table. Writes
`paths.pose_reference` (table.json, pairs.csv, trajectories/).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from pipeline.config import Params, PoseParams
from pipeline.data.datasets import read_summary
from pipeline.device import pick_device
from pipeline.model import DepthNet
from pipeline.pose.estimate import BASELINES, Variant, variants
from pipeline.pose.features import seeded_model
from pipeline.pose.results import table, write_reference
from pipeline.pose.sweep import Method, Sweep, sweep
from pipeline.sequences.layout import list_sequences
from pipeline.trajectory.open3d_lib import ENABLE_HINT, open3d_unavailable

log = logging.getLogger(__name__)

NO_SEQUENCES = "no sequences under {folder} (sequences.enabled is false, or the sequences stage found none)"


def needs_model(v: Variant) -> bool:
    """Whether a variant reads the trained network: its encoder's features or its predicted depth."""
    return v.weights == "trained" and (v.features == "encoder" or v.depth == "predicted")


def reference_methods(cfg: PoseParams) -> list[Method]:
    """The variants of `pose.*` that need no trained model, then the baselines."""
    return [v for v in variants(cfg.features, cfg.depth, cfg.control) if not needs_model(v)] + list(BASELINES)


def control_net(params: Params, processed_dir: Path, dev: torch.device) -> DepthNet:
    """The depth network of `model.*` at its initial weights under `pose.seed` (the trained one's input scaling).

    The plain U-Net standardises its input with the training split's RGB statistics
    (preprocess's summary.json), exactly as the trained model does; the global RNG is left as it was.
    """
    summary = read_summary(processed_dir)
    return seeded_model(params.model, summary["rgb_mean"], summary["rgb_std"], params.pose.seed).to(dev).eval()


def meta(params: Params, run: Sweep, hw: tuple[int, int], dev: torch.device) -> dict[str, Any]:
    """What both pose stages scored on: `merge` refuses two halves that differ here."""
    return {
        "enabled": True,
        "sequences": list(run.frames),
        "frames": int(sum(len(f) for f in run.frames.values())),
        "gaps": list(params.pose.gaps),
        "resolution": list(hw),
        "native_size": run.native,
        "device": dev.type,
        "init": "identity",
        "success_threshold": {"trans_m": params.pose.success_trans_m, "rot_deg": params.pose.success_rot_deg},
    }


def _unavailable(methods: list[Method]) -> dict[str, dict[str, Any]]:
    """Removes from `methods` a baseline that cannot run here; its table entry says why."""
    if "open3d" not in methods or (reason := open3d_unavailable()) is None:
        return {}
    log.warning("pose: the Open3D baseline is unavailable: %s (%s)", reason, ENABLE_HINT)
    methods.remove("open3d")
    return {"open3d": {"available": False, "reason": reason, "depth": "sensor"}}


def run(params: Params, root: Path) -> dict[str, Any]:
    """Scores the model-free methods on the sequences; writes `paths.pose_reference`.

    Returns:
        Its table (the format of `paths.pose_table`).

    Raises:
        PipelineError: a sequence or the processed data's summary is missing or unreadable.
    """
    paths = params.paths.resolve(root)
    folders = list_sequences(paths.sequences)
    if not folders:
        note = NO_SEQUENCES.format(folder=params.paths.sequences)
        log.warning("pose_reference: %s; writing an empty table", note)
        full: dict[str, Any] = {"enabled": False, "note": note}
        write_reference(paths.pose_reference, full, Sweep(scores={}))
        return full
    dev = pick_device(params.pose.device, "params: pose.device")
    hw = (params.preprocess.height, params.preprocess.width)  # the model's training resolution
    methods = reference_methods(params.pose)
    missing = _unavailable(methods)
    nets = {"untrained": control_net(params, paths.processed_dir, dev)} if params.pose.control else {}
    done = sweep(params, folders, methods, hw, nets, dev)
    full = table(done, methods, meta(params, done, hw, dev))
    full["baselines"].update(missing)
    write_reference(paths.pose_reference, full, done)
    return full
