"""The pose stages' outputs: the full table, the headline metrics, the pairs and the trajectories.

- the full table (`paths.pose_table`, and `table.json` in `paths.pose_reference`): per
  method, RPE per gap, success and convergence per gap, ATE, pairs/s; what the report
  and the docs read;
- the headline (`paths.pose_metrics`, the DVC metrics file): a few figures per method,
  so `dvc exp show` stays readable (docs/experiments.md: Picking columns);
- pairs (`pose_pairs.csv`): a row per pair and method; trajectories: TUM files per
  sequence and method, beside the ground truth.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, atomic_path, write_json_atomic
from pipeline.pose.scores import PAIR_COLUMNS, summary
from pipeline.pose.sweep import Method, Sweep, method_name
from pipeline.sequences.layout import pose_line

HEADLINE_GAPS = (1, 4)  # a gap-1 pair is the odometry's own step; 4 frames out (0.13 s at 30 Hz) tests the basin
TABLE, PAIRS, TRAJECTORIES = "table.json", "pairs.csv", "trajectories"


def method_info(m: Method) -> dict[str, str]:
    """What a method is, for its table entry."""
    if isinstance(m, str):
        return {"depth": "sensor" if m == "open3d" else "none"}
    return {"features": m.features, "depth": m.depth, "weights": m.weights}


def table(run: Sweep, methods: list[Method], meta: dict[str, Any]) -> dict[str, Any]:
    """The full table of one sweep: `meta` (sequences, resolution, ...) and an entry per method."""
    return {
        **meta,
        "variants": {method_name(m): summary(run.scores[method_name(m)], method_info(m)) for m in methods
                     if not isinstance(m, str)},
        "baselines": {m: summary(run.scores[m], method_info(m)) for m in methods if isinstance(m, str)},
    }  # fmt: skip


def _headline_gaps(entry: dict[str, Any]) -> list[str]:
    """`gap_1` (else the shortest scored) and `gap_4` (else the longest scored)."""
    scored = sorted(entry["success"], key=lambda k: int(k.split("_")[1]))
    short, far = (f"gap_{g}" for g in HEADLINE_GAPS)
    chosen = [short if short in scored else scored[0], far if far in scored else scored[-1]]
    return list(dict.fromkeys(chosen))


def headline(full: dict[str, Any]) -> dict[str, Any]:
    """The DVC metrics file: per method, success at gaps 1 and 4 (`_headline_gaps`) and the ATE (SE(3) RMSE, m)."""
    out: dict[str, Any] = {"enabled": full.get("enabled", False)}
    if not out["enabled"]:
        return {**out, "note": full.get("note", "")}
    for group in ("variants", "baselines"):
        for name, entry in full[group].items():
            if entry.get("available") is False:
                out[name] = {"available": False, "reason": entry["reason"]}
                continue
            figures = {f"success_{g}": entry["success"][g] for g in _headline_gaps(entry)}
            if entry.get("ate"):
                figures["ate_m"] = entry["ate"]["se3"]["rmse_m"]
            out[name] = figures
    return out


def write_pairs(path: Path, rows: list[pd.DataFrame]) -> None:
    """The pair rows as CSV, atomically; floats at full precision (a TUM timestamp needs 16 digits)."""
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(PAIR_COLUMNS))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _write_trajectories(folder: Path, run: Sweep) -> None:
    """<folder>/<sequence>/<method>.txt and groundtruth.txt, TUM format (timestamp tx ty tz qx qy qz qw)."""
    for seq, methods in run.trajectories.items():
        (folder / seq).mkdir(parents=True, exist_ok=True)
        frames = run.frames[seq]
        known = frames.has_groundtruth  # (N,) bool: a frame in a mocap dropout has a stand-in pose, not written
        files = {"groundtruth": (frames.times[known], frames.groundtruth[known])}
        files |= {method: (frames.times, poses) for method, poses in methods.items()}
        for method, (times, poses) in files.items():
            lines = [pose_line(float(t), P) for t, P in zip(times, poses, strict=True)]
            (folder / seq / f"{method}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_trajectories(folder: Path, run: Sweep, merge_from: Path | None = None) -> None:
    """The sweep's trajectories as one folder, atomically, with those under `merge_from` copied in first."""
    with atomic_dir(folder) as staging:
        if merge_from is not None and merge_from.is_dir():
            shutil.copytree(merge_from, staging, dirs_exist_ok=True)
        _write_trajectories(staging, run)


def write_reference(folder: Path, full: dict[str, Any], run: Sweep) -> None:
    """`pose_reference`'s output folder (table.json, pairs.csv, trajectories/), atomically as a whole."""
    with atomic_dir(folder) as staging:
        write_json_atomic(staging / TABLE, full)
        write_pairs(staging / PAIRS, run.rows)
        _write_trajectories(staging / TRAJECTORIES, run)


def read_reference(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """`pose_reference`'s table and pair rows.

    Raises:
        PipelineError: the folder is missing or incomplete.
    """
    try:
        full = json.loads((folder / TABLE).read_text(encoding="utf-8"))
        rows = pd.read_csv(folder / PAIRS) if full.get("enabled") else pd.DataFrame(columns=list(PAIR_COLUMNS))
    except (OSError, ValueError) as e:
        raise PipelineError(f"{folder}: the pose_reference stage's output is missing or unreadable ({e}); "
                            "run it first: dvc repro pose_reference") from None  # fmt: skip
    return full, rows


def check_reference(reference: dict[str, Any], gaps: list[int], sequences: list[str]) -> None:
    """Fails fast, before any alignment, when pose_reference scored other gaps or sequences than asked now.

    Raises:
        PipelineError: naming what differs and how to refresh it.
    """
    for key, asked in (("gaps", list(gaps)), ("sequences", sorted(sequences))):
        scored = reference.get(key)
        scored = sorted(scored) if key == "sequences" and scored else scored
        if scored != asked:
            raise PipelineError(
                f"pose_reference scored {key} {scored}, pose is asked for {asked}: its output is stale; "
                "run dvc repro (or dvc repro -f pose_reference)"
            )


def merge(reference: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """One table: `own`'s meta and methods, with the reference methods beside them.

    Raises:
        PipelineError: the two were scored on different sequences, frames, gaps or resolution.
    """
    for key in ("sequences", "frames", "resolution", "gaps"):
        if reference.get(key) != own.get(key):
            raise PipelineError(
                f"pose_reference scored {key} {reference.get(key)}, pose {own.get(key)}: its output is stale; "
                "run dvc repro (or dvc repro -f pose_reference)"
            )
    return {
        **own,
        "variants": {**reference["variants"], **own["variants"]},
        "baselines": {**reference["baselines"], **own["baselines"]},
    }
