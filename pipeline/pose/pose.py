"""The pose stage: `run(params, root)`, camera motion from the trained network's features, scored.

For every sequence under `paths.sequences`, every pair (target i, source i + gap) for
each gap in `pose.gaps` is solved from the identity by direct alignment
(`pipeline.pose.solver`) with each variant that reads the trained model (its encoder's
features, or its predicted depth). The methods that never read it were scored by the
`pose_reference` stage (DVC keeps them cached across experiments that change only the
model); the two are merged here into:

- `paths.pose_table`: the full table (RPE per gap, success rates, ATE per method), which
  the report and the docs read;
- `paths.pose_metrics`: the headline figures per method, DVC's metrics file;
- `paths.pose_pairs` (a row per pair and method) and `paths.pose_trajectories` (the
  chained trajectories in TUM's format);

and the table's figures are logged under `pose/` in the experiment's MLflow run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Params
from pipeline.device import pick_device
from pipeline.evaluation.inference import predict_depth, train_resolution
from pipeline.io import write_json_atomic
from pipeline.model import DepthNet, load_model
from pipeline.pose.estimate import variants
from pipeline.pose.frames import SequenceFrames
from pipeline.pose.reference import meta, needs_model
from pipeline.pose.results import (
    TRAJECTORIES,
    check_reference,
    headline,
    merge,
    read_reference,
    table,
    write_pairs,
    write_trajectories,
)
from pipeline.pose.sweep import Method, Sweep, sweep
from pipeline.sequences.layout import list_sequences
from pipeline.tracking import resume_run
from pipeline.tracking.names import pose_metrics

log = logging.getLogger(__name__)


def _predictor(model: DepthNet, batch_size: int):
    """The trained network's depth, (N, h, w) float32 metres, for every frame of a sequence at its size."""

    def predict(frames: SequenceFrames) -> np.ndarray:
        hw = frames.rgb.shape[1:3]
        chunks = [frames.rgb[k : k + batch_size] for k in range(0, len(frames), batch_size)]
        return np.concatenate([predict_depth(model, c, hw).cpu().numpy() for c in chunks]).astype(np.float32)

    return predict


def _score_model_variants(params: Params, root: Path, folders: list[Path]) -> tuple[dict[str, Any], Sweep]:
    """The trained model's variants on every sequence: their table and the sweep."""
    cfg, paths = params.pose, params.paths.resolve(root)
    dev = pick_device(cfg.device, "params: pose.device")
    model, info = load_model(paths.model, map_location=dev)
    hw = train_resolution(info)
    methods: list[Method] = [v for v in variants(cfg.features, cfg.depth, cfg.control) if needs_model(v)]
    done = sweep(params, folders, methods, hw, {"trained": model}, dev, _predictor(model, cfg.batch_size))
    full = table(done, methods, meta(params, done, hw, dev))
    full["model_epoch"] = info.get("epoch")
    return full, done


def run(params: Params, root: Path) -> dict[str, Any]:
    """Scores the model's variants, merges `pose_reference`'s methods; writes the pose reports; logs `pose/`.

    Returns:
        The full table (the content of `paths.pose_table`).

    Raises:
        PipelineError: the model, a sequence or pose_reference's output is missing or unreadable,
            or pose_reference scored other sequences.
    """
    paths = params.paths.resolve(root)
    reference, reference_rows = read_reference(paths.pose_reference)
    folders = list_sequences(paths.sequences)
    if not folders or not reference.get("enabled"):
        full: dict[str, Any] = {**reference, "enabled": False}
        done = Sweep(scores={})
    else:
        check_reference(reference, params.pose.gaps, [f.name for f in folders])
        own, done = _score_model_variants(params, root, folders)
        full = merge(reference, own)
    write_pairs(paths.pose_pairs, [reference_rows, *done.rows])
    write_trajectories(paths.pose_trajectories, done, merge_from=paths.pose_reference / TRAJECTORIES)
    write_json_atomic(paths.pose_table, full)
    write_json_atomic(paths.pose_metrics, headline(full))  # last: DVC's metrics file says the stage finished
    with resume_run(params, paths.run_id, root) as tracker:  # no-op when MLflow is off or unreachable
        tracker.log_metrics(pose_metrics(full))
        tracker.log_artifact(paths.pose_table)
    return full
