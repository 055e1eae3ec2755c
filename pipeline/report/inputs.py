"""Reads and checks everything the report is made from, before anything is written.

Every problem (a missing file, a missing column or key) is a `PipelineError` naming
the file and the stage that writes it, so a report is never half-built from bad inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import PathsParams
from pipeline.errors import PipelineError
from pipeline.evaluation.formats import BIN_COLUMNS, EXAMPLE_KEYS
from pipeline.metrics import METRIC_NAMES
from pipeline.tracking import read_run_id

# The resolution keys (`resolution` in the docs; evaluate writes `eval_resolution` and
# `train_resolution`) are optional: the report words around a missing one.
PROTOCOL_KEYS = ("gt", "crop", "flip_tta", "min_depth", "max_depth")


@dataclass(frozen=True)
class ReportInputs:
    """The evaluation and training outputs, parsed and checked."""

    metrics: dict[str, Any]  # reports/metrics.json as written by evaluate
    per_image: pd.DataFrame  # index, scene, scene_type, METRIC_NAMES
    per_scene_type: pd.DataFrame  # scene_type, n_images, METRIC_NAMES
    error_by_depth: pd.DataFrame  # BIN_COLUMNS
    predictions: dict[str, np.ndarray]  # EXAMPLE_KEYS; rgb (K, H, W, 3), gt/pred (K, H, W)
    train_log: pd.DataFrame  # epoch, train_loss, val_loss, val_<metric>, lr, ...
    run_id: str | None  # MLflow run id, None when tracking was off
    pose: PoseInputs  # the pose stage's scores and trajectories


def _require_file(path: Path, writer: str) -> None:
    if not path.is_file():
        raise PipelineError(f"report: input {path} is missing; run the '{writer}' stage first (dvc repro {writer})")


def _read_table(path: Path, writer: str, columns: tuple[str, ...], sep: str = ",") -> pd.DataFrame:
    _require_file(path, writer)
    try:
        df = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PipelineError(f"report: {path} is not a readable table ({e}); re-run '{writer}'") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise PipelineError(f"report: {path} lacks column(s) {', '.join(missing)}; re-run '{writer}'")
    if df.empty:
        raise PipelineError(f"report: {path} has no rows; re-run '{writer}'")
    return df


def _read_json(path: Path, writer: str) -> Any:
    _require_file(path, writer)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelineError(f"report: {path} is not valid JSON ({e}); re-run '{writer}'") from None


def read_metrics(path: Path) -> dict[str, Any]:
    """metrics.json, checked for the nine metrics, the baseline's nine, protocol and source."""
    m = _read_json(path, "evaluate")
    if not isinstance(m, dict):
        raise PipelineError(f"report: {path} must hold a JSON object; re-run 'evaluate'")
    missing = [k for k in (*METRIC_NAMES, "baseline", "protocol", "source", "n_images") if k not in m]
    for section, keys in (("baseline", METRIC_NAMES), ("protocol", PROTOCOL_KEYS)):
        inner = m.get(section)
        if isinstance(inner, dict):
            missing += [f"{section}.{k}" for k in keys if k not in inner]
        elif section not in missing:
            missing.append(f"{section} (as an object)")
    if missing:
        raise PipelineError(f"report: {path} lacks key(s) {', '.join(missing)}; re-run 'evaluate'")
    return m


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """predictions.npz as plain arrays (strings as str, not object: no pickle needed)."""
    _require_file(path, "evaluate")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in EXAMPLE_KEYS if k not in z.files]
            arrays = {k: z[k] for k in EXAMPLE_KEYS if k in z.files}
    except (OSError, ValueError) as e:
        raise PipelineError(f"report: {path} is not a readable .npz ({e}); re-run 'evaluate'") from None
    if missing:
        raise PipelineError(f"report: {path} lacks array(s) {', '.join(missing)}; re-run 'evaluate'")
    k = len(arrays["index"])
    if not (arrays["gt"].shape == arrays["pred"].shape == arrays["rgb"].shape[:-1] and arrays["gt"].shape[0] == k):
        shapes = {n: arrays[n].shape for n in ("rgb", "gt", "pred")}
        raise PipelineError(f"report: {path} has inconsistent shapes {shapes}; re-run 'evaluate'")
    return arrays


@dataclass(frozen=True)
class PoseInputs:
    """pose_table.json and the chained trajectories' positions: {sequence: {method: (N, 3)}}."""

    metrics: dict[str, Any]
    positions: dict[str, dict[str, np.ndarray]]


def read_pose(paths: PathsParams) -> PoseInputs:
    """The pose stage's outputs, checked.

    Raises:
        PipelineError: pose_table.json is missing or unreadable, or a trajectory file is malformed.
    """
    metrics = _read_json(paths.pose_table, "pose")
    positions: dict[str, dict[str, np.ndarray]] = {}
    folder = paths.pose_trajectories
    for seq in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        positions[seq.name] = {f.stem: _positions(f) for f in sorted(seq.glob("*.txt"))}
    return PoseInputs(metrics, positions)


def _positions(path: Path) -> np.ndarray:
    """(N, 3) camera positions of a TUM trajectory file."""
    try:
        rows = np.loadtxt(path, ndmin=2)
    except ValueError as e:
        raise PipelineError(f"report: {path} is not a TUM trajectory ({e}); re-run 'pose'") from None
    if rows.shape[1] != 8:
        raise PipelineError(
            f"report: {path} has {rows.shape[1]} columns, not 8 (t tx ty tz qx qy qz qw); re-run 'pose'"
        )
    return rows[:, 1:4]


def load_inputs(paths: PathsParams) -> ReportInputs:
    """Reads every report input; raises `PipelineError` naming the first bad file."""
    val_cols = tuple(f"val_{m}" for m in METRIC_NAMES)
    return ReportInputs(
        metrics=read_metrics(paths.metrics),
        per_image=_read_table(paths.per_image, "evaluate", ("index", "scene", "scene_type", *METRIC_NAMES)),
        per_scene_type=_read_table(paths.per_scene_type, "evaluate", ("scene_type", "n_images", *METRIC_NAMES)),
        error_by_depth=_read_table(paths.error_by_depth, "evaluate", BIN_COLUMNS),
        predictions=read_predictions(paths.predictions),
        train_log=_read_table(paths.train_log, "train", ("epoch", "train_loss", "val_loss", *val_cols), sep="\t"),
        run_id=read_run_id(paths.run_id),
        pose=read_pose(paths),
    )
