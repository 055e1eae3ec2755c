"""Every method on every scored pair of every sequence: the loop both pose stages run.

`pose_reference` runs it for the methods that never read the trained model (intensities
with sensor depth, the untrained control, standing still, Open3D); `pose` for the
trained model's variants. Each method is scored on its own, so the two halves merge into
one table (`pipeline.pose.results`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config import Params
from pipeline.model import DepthNet
from pipeline.pose.estimate import Estimates, Variant, baseline, estimate_group
from pipeline.pose.frames import Pairs, SequenceFrames, load_frames, pairs_for
from pipeline.pose.scores import MethodScores, collect, pair_rows, true_motion
from pipeline.pose.solver import AlignOptions
from pipeline.sequences.layout import read_sequence

log = logging.getLogger(__name__)

Method = Variant | str  # a variant, or a baseline's name
Predictor = Callable[[SequenceFrames], np.ndarray]  # (N, h, w) float32 metres for every frame


def method_name(m: Method) -> str:
    """The method's key in the tables: a variant's name or the baseline's."""
    return m if isinstance(m, str) else m.name


@dataclass
class Sweep:
    """What one run of the loop scored."""

    scores: dict[str, MethodScores]
    rows: list[pd.DataFrame] = field(default_factory=list)
    trajectories: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # sequence -> method -> (N, 4, 4)
    frames: dict[str, SequenceFrames] = field(default_factory=dict)
    native: dict[str, list[int]] = field(default_factory=dict)  # sequence -> its frames' own [h, w]


def _estimates(methods: Sequence[Method], frames: SequenceFrames, pairs: Pairs, nets: dict[str, DepthNet],
               depth: np.ndarray, params: Params, dev: torch.device) -> dict[str, Estimates]:  # fmt: skip
    """Every method's estimates; variants that share features and weights share one extraction of each frame."""
    out = {m: baseline(m, frames, pairs) for m in methods if isinstance(m, str)}
    options = AlignOptions(iterations=params.pose.iterations, depth_weight=params.pose.depth_weight)
    groups: dict[tuple[str, str], list[Variant]] = {}
    for v in (m for m in methods if isinstance(m, Variant)):
        groups.setdefault((v.features, v.weights), []).append(v)
    for (features, weights), group in groups.items():
        net = nets.get(weights)  # None for intensities: they need no network
        if net is None and features == "encoder":
            raise ValueError(f"variants {[v.name for v in group]} need the {weights} network")
        out |= estimate_group(frames, pairs, group, net, depth, options, params.pose.batch_size, dev)  # type: ignore[arg-type]
    return out


def sweep(
    params: Params, folders: Sequence[Path], methods: Sequence[Method], hw: tuple[int, int],
    nets: dict[str, DepthNet], dev: torch.device, predict: Predictor | None = None,
) -> Sweep:  # fmt: skip
    """Scores `methods` on every pair (`pose.gaps`) of every sequence folder, at `hw`.

    Args:
        params: the pipeline params (`pose.*`, `sequences.tolerance_s`).
        folders: the sequences' TUM-layout folders.
        methods: variants and baselines, each scored on its own.
        hw: the estimator's (h, w): the model's training resolution.
        nets: `trained` and/or `untrained`, for the variants' `weights`.
        dev: where features are extracted and pairs aligned.
        predict: the network's depth for a sequence's frames; needed by a `predicted` variant.
    """
    cfg = params.pose
    out = Sweep(scores={method_name(m): MethodScores() for m in methods})
    thresholds = (cfg.success_trans_m, cfg.success_rot_deg)
    for folder in folders:
        seq = read_sequence(folder, params.sequences.tolerance_s)
        frames = load_frames(seq, hw, cfg.max_frames)
        pairs = pairs_for(len(frames), cfg.gaps)
        gt = true_motion(frames, pairs)
        needs_prediction = any(isinstance(m, Variant) and m.depth == "predicted" for m in methods)
        # The sensor's depth stands in where no method uses the network's (it is then never read).
        depth = predict(frames) if needs_prediction and predict is not None else frames.depth
        log.info("pose: %s, %d frames at %dx%d, %d pairs x %d methods", seq.name, len(frames), *hw, len(pairs),
                 len(methods))  # fmt: skip
        out.frames[seq.name], out.trajectories[seq.name] = frames, {}
        out.native[seq.name] = [seq.intrinsics.height, seq.intrinsics.width]
        estimates = _estimates(methods, frames, pairs, nets, depth, params, dev)
        for m in methods:
            name = method_name(m)
            est = estimates[name]
            table, success = pair_rows(frames, pairs, gt, name, est, thresholds)
            out.rows.append(table)
            traj = collect(out.scores[name], frames, pairs, gt, est, success)
            if traj is not None:
                out.trajectories[seq.name][name] = traj
    return out
