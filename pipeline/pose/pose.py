"""The pose stage: `run(params, root)`, camera motion from the depth network's features, scored.

For every sequence under `paths.sequences`, every pair (target i, source i + gap) for
each gap in `pose.gaps` is solved by direct alignment (`pipeline.pose.solver`) with each
variant (`pose.features` x `pose.depth`, plus the untrained-encoder control), from the
identity, and by the two baselines (standing still, Open3D's RGB-D odometry). Writes
`paths.pose_metrics` (RPE per gap, success rates, ATE of the chained gap-1 estimates,
per method), `paths.pose_pairs` (a row per pair and method) and `paths.pose_trajectories`
(the chained trajectories in TUM's format, for the report's plots), and logs the
headline figures under `pose/` in the MLflow run that trained the model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Params, PathsParams
from pipeline.device import pick_device
from pipeline.evaluation.inference import predict_depth, train_resolution
from pipeline.io import atomic_dir, atomic_path, write_json_atomic
from pipeline.model import DepthNet, load_model
from pipeline.pose.estimate import BASELINES, Variant, baseline, estimate, pairs_for, variants
from pipeline.pose.features import untrained_copy
from pipeline.pose.frames import SequenceFrames, load_frames
from pipeline.pose.scores import (
    PAIR_COLUMNS,
    MethodScores,
    collect,
    mlflow_metrics,
    pair_rows,
    summary,
    true_motion,
)
from pipeline.pose.solver import AlignOptions
from pipeline.sequences.layout import list_sequences, pose_line, read_sequence
from pipeline.tracking import resume_run

log = logging.getLogger(__name__)

NO_SEQUENCES = "no sequences under {folder} (sequences.enabled is false, or the sequences stage found none)"


def _predicted(model: DepthNet, frames: SequenceFrames, batch_size: int) -> np.ndarray:
    """(N, h, w) float32 metres: the trained network's depth for every frame, at the frames' size."""
    hw = frames.rgb.shape[1:3]
    chunks = [frames.rgb[k : k + batch_size] for k in range(0, len(frames), batch_size)]
    return np.concatenate([predict_depth(model, c, hw).cpu().numpy() for c in chunks]).astype(np.float32)


def _write_trajectories(folder: Path, trajectories: dict[str, dict[str, np.ndarray]], frames: dict) -> None:
    """<folder>/<sequence>/<method>.txt and groundtruth.txt, TUM format (timestamp tx ty tz qx qy qz qw)."""
    for seq, methods in trajectories.items():
        (folder / seq).mkdir(parents=True)
        times = frames[seq].times
        for method, poses in {"groundtruth": frames[seq].groundtruth, **methods}.items():
            lines = [pose_line(float(t), P) for t, P in zip(times, poses, strict=True)]
            (folder / seq / f"{method}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write(paths: PathsParams, metrics: dict[str, Any], rows: list[pd.DataFrame], trajectories: dict,
           frames: dict) -> None:  # fmt: skip
    """The three outputs, each atomically; the metrics last (DVC's metrics file says the run finished)."""
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(PAIR_COLUMNS))
    with atomic_path(paths.pose_pairs) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_dir(paths.pose_trajectories) as staging:
        _write_trajectories(staging, trajectories, frames)
    write_json_atomic(paths.pose_metrics, metrics)


def _method_info(v: Variant | str) -> dict[str, str]:
    if isinstance(v, str):
        return {"depth": "sensor" if v == "open3d" else "none"}
    return {"features": v.features, "depth": v.depth, "weights": v.weights}


def run(params: Params, root: Path) -> dict[str, Any]:
    """Scores every variant and baseline on the sequences; writes the pose reports; logs `pose/` to MLflow.

    Returns:
        The content of pose_metrics.json.

    Raises:
        PipelineError: the model or a sequence is missing or unreadable.
    """
    cfg, paths = params.pose, params.paths.resolve(root)
    folders = list_sequences(paths.sequences)
    if not folders:
        log.warning("pose: %s; writing empty pose reports", NO_SEQUENCES.format(folder=paths.sequences))
        metrics: dict[str, Any] = {"enabled": False, "note": NO_SEQUENCES.format(folder=params.paths.sequences)}
        _write(paths, metrics, [], {}, {})
        return metrics
    dev = pick_device(cfg.device, "params: pose.device")
    model, meta = load_model(paths.model, map_location=dev)
    hw = train_resolution(meta)
    nets = {"trained": model, "untrained": untrained_copy(model, seed=cfg.seed)}
    options = AlignOptions(iterations=cfg.iterations)
    methods: list[Variant | str] = [*variants(cfg.features, cfg.depth, cfg.control), *BASELINES]
    acc = {m if isinstance(m, str) else m.name: MethodScores() for m in methods}
    rows: list[pd.DataFrame] = []
    trajectories: dict[str, dict[str, np.ndarray]] = {}
    all_frames: dict[str, SequenceFrames] = {}
    for folder in folders:
        seq = read_sequence(folder, params.sequences.tolerance_s)
        frames = load_frames(seq, hw, cfg.max_frames)
        pairs = pairs_for(len(frames), cfg.gaps)
        gt = true_motion(frames, pairs)
        # The sensor's depth stands in where no variant uses the network's (it is then never read).
        predicted = _predicted(model, frames, cfg.batch_size) if "predicted" in cfg.depth else frames.depth
        log.info("pose: %s, %d frames at %dx%d, %d pairs x %d methods", seq.name, len(frames), *hw, len(pairs),
                 len(methods))  # fmt: skip
        all_frames[seq.name], trajectories[seq.name] = frames, {}
        for m in methods:
            name = m if isinstance(m, str) else m.name
            if isinstance(m, str):
                est = baseline(m, frames, pairs)
            else:
                est = estimate(frames, pairs, m, nets[m.weights], predicted, options, cfg.batch_size, dev)
            table, success = pair_rows(frames, pairs, gt, name, est, (cfg.success_trans_m, cfg.success_rot_deg))
            rows.append(table)
            traj = collect(acc[name], frames, pairs, gt, est, success)
            if traj is not None:
                trajectories[seq.name][name] = traj
    metrics = {
        "enabled": True,
        "sequences": [f.name for f in folders],
        "frames": int(sum(len(f) for f in all_frames.values())),
        "resolution": list(hw),
        "device": dev.type,
        "model_epoch": meta.get("epoch"),
        "init": "identity",
        "success_threshold": {"trans_m": cfg.success_trans_m, "rot_deg": cfg.success_rot_deg},
        "variants": {m.name: summary(acc[m.name], _method_info(m)) for m in methods if isinstance(m, Variant)},
        "baselines": {m: summary(acc[m], _method_info(m)) for m in methods if isinstance(m, str)},
    }
    _write(paths, metrics, rows, trajectories, all_frames)
    with resume_run(params, paths.run_id, root) as tracker:  # no-op when MLflow is off or unreachable
        tracker.log_metrics(mlflow_metrics(metrics))
        tracker.log_artifact(paths.pose_metrics)
    return metrics
