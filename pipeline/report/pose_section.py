"""The report's camera-motion section: the pose stage's variants against the baselines and published TUM numbers.

Drawn from the pose stage's outputs (`inputs.PoseInputs`: `pose_table.json`, the chained
trajectories); when the stage found no sequences the section says so and draws nothing.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.camera import aspect_differs
from pipeline.report.inputs import PoseInputs
from pipeline.report.markup import Block, FigureRef, Heading, Paragraph
from pipeline.report.tables import MISSING, Table, fmt
from pipeline.trajectory.published import published_rows

TRAJECTORIES, BY_GAP = "pose_trajectories.png", "pose_by_gap.png"
MAX_SEQUENCES_DRAWN = 4  # one top-down panel each; more would shrink them past reading


def _methods(metrics: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, kind, entry) of every variant, then the baselines, leaving out those that could not run."""
    every = [(n, "variant", m) for n, m in metrics["variants"].items()] + [
        (n, "baseline", m) for n, m in metrics["baselines"].items()
    ]
    return [(n, kind, m) for n, kind, m in every if m.get("available") is not False]


def _unavailable(metrics: dict[str, Any]) -> list[str]:
    """`name: reason` of every method that could not run here."""
    return [f"{n}: {m['reason']}" for group in ("variants", "baselines") for n, m in metrics[group].items()
            if m.get("available") is False]  # fmt: skip


def _describe(name: str, m: dict[str, Any]) -> str:
    if name == "identity":
        return "standing still"
    if name == "open3d":
        return "Open3D RGB-D odometry (hybrid term), sensor depth"
    weights = ", untrained" if m.get("weights") == "untrained" else ""
    return f"{m['features']} features{weights}, {m['depth']} depth"


def _squashed(metrics: dict[str, Any]) -> str | None:
    """A sentence when a sequence's frames have another aspect ratio than the estimator's resolution."""
    h, w = metrics["resolution"]
    odd = {seq: hw for seq, hw in (metrics.get("native_size") or {}).items() if aspect_differs(tuple(hw), (h, w))}
    if not odd:
        return None
    seq, (nh, nw) = next(iter(odd.items()))
    stretch = (w / h) / (nw / nh) - 1
    return (
        f"{len(odd)} sequence(s) ({seq}: {nw}×{nh}) have another aspect ratio than the model's {w}×{h}: their frames "
        f"are resized to it, stretched {stretch:+.1%} horizontally, not padded as `predict` pads. Padding would "
        "leave the aligned pyramid borders without image; resizing keeps every pixel, and the intrinsics are "
        "scaled per axis so the alignment's geometry stays exact. The network sees the stretched shapes, which "
        "may cost its features and predicted depth a little."
    )


def rpe_table(metrics: dict[str, Any]) -> Table:
    """Per method: RPE RMSE per gap (mm / degrees) and the success rate per gap; the best variant per gap bold."""
    gaps = list(next(iter(metrics["variants"].values()))["rpe"])
    rows, bold = [], set()
    for name, _kind, m in _methods(metrics):
        row = {"method": name, "what": _describe(name, m)}
        for g in gaps:
            r = m["rpe"][g]
            t, a = r["trans_m"]["rmse"], r["rot_deg"]["rmse"]
            row[f"{g.replace('_', ' ')}: mm / °"] = MISSING if t is None else f"{1000 * t:.1f} / {a:.2f}"
            row[f"{g.replace('_', ' ')}: success"] = f"{m['success'][g]:.0%}"
        rows.append(row)
    for g in gaps:  # the variant with the most successes at each gap
        col = f"{g.replace('_', ' ')}: success"
        rates = [(m["success"][g], i) for i, (_, kind, m) in enumerate(_methods(metrics)) if kind == "variant"]
        bold.add((max(rates)[1], col))
    th = metrics["success_threshold"]
    caption = (
        f"Relative pose error (RMSE over the pairs at each frame gap, evo) and success rate: converged and within "
        f"{1000 * th['trans_m']:g} mm and {th['rot_deg']:g}°, every pair started from the identity. Bold: the "
        "variant that succeeds most often at that gap."
    )
    return Table(pd.DataFrame(rows), caption, frozenset(bold))


def ate_table(metrics: dict[str, Any]) -> Table:
    """Per method: ATE of the chained gap-1 estimates, SE(3)-aligned and Sim(3)-aligned (with its scale)."""
    rows = []
    for name, _, m in _methods(metrics):
        ate = m.get("ate") or {}
        se3, sim3 = ate.get("se3", {}), ate.get("sim3", {})
        rows.append({
            "method": name, "ATE SE(3) m": fmt(se3.get("rmse_m")), "ATE Sim(3) m": fmt(sim3.get("rmse_m")),
            "Sim(3) scale": fmt(sim3.get("scale")), "pairs/s": fmt(m.get("pairs_per_s"), 1),
        })  # fmt: skip
    caption = (
        "Absolute trajectory error of each method's frame-to-frame estimates chained into a trajectory, mean over "
        "sequences (evo). SE(3): rigid alignment, the metric figure; Sim(3): scale also fitted, labelled as such."
    )
    return Table(pd.DataFrame(rows), caption)


def tum_short_name(sequence: str) -> str | None:
    """TUM's short name of a sequence folder (`rgbd_dataset_freiburg1_desk`, `freiburg1_desk` -> `fr1/desk`)."""
    found = re.search(r"freiburg(\d)_(\w+?)(?:_validation)?$", sequence)
    return f"fr{found.group(1)}/{found.group(2)}" if found else None


def _own_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """This run's ATE (SE(3), m) per method on each of its sequences that is a TUM RGB-D one."""
    rows = []
    for name, _kind, m in _methods(metrics):
        for seq, ate in (m.get("ate_per_sequence") or {}).items():
            short = tum_short_name(seq)
            if short and ate["se3"].get("rmse_m") is not None:
                protocol = "RGB-D frame-to-frame odometry, SE3, every frame (no loop closure)"
                rows.append({"method": f"this run: {name}", "sequence": short, "ate_m": ate["se3"]["rmse_m"],
                             "protocol": protocol})  # fmt: skip
    return rows


def published_table(metrics: dict[str, Any]) -> Table:
    """Method x sequence: published TUM RGB-D ATEs with their protocol, this run's beside them on shared sequences."""
    published = [{**r, "protocol": f"{r['input']}, {r['alignment']}, frames: {r['frames']}"} for r in published_rows()]
    own = _own_rows(metrics)
    ours = {r["sequence"] for r in own}
    frame = pd.DataFrame(own + published)
    wide = frame.pivot_table(index=["method", "protocol"], columns="sequence", values="ate_m", sort=False)
    order = sorted(wide.columns, key=lambda c: (c not in ours, c))  # the run's own sequences first
    wide = wide[order].map(lambda v: MISSING if pd.isna(v) else fmt(v)).reset_index()
    caption = (
        "ATE RMSE (m) per method and TUM RGB-D sequence. Published rows are copied from the papers (ORB-SLAM2's "
        "Table III for the RGB-D systems, DROID-SLAM's for the monocular ones), for context: full SLAM or odometry "
        "systems at 640×480 under the protocol in their row. Rows starting 'this run' are this pipeline's chained "
        "frame-to-frame estimates on the sequences it shares with them."
    )
    return Table(wide, caption)


def plot_trajectories(positions: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Top-down (x, z) view per sequence: the ground truth and every method's chained trajectory."""
    names = list(positions)[:MAX_SEQUENCES_DRAWN]
    fig = Figure(figsize=(4.2 * len(names), 4.2), layout="constrained")
    for ax, seq in zip(fig.subplots(1, len(names), squeeze=False)[0], names, strict=True):
        for method, p in positions[seq].items():
            truth = method == "groundtruth"
            ax.plot(p[:, 0], p[:, 2], color="black" if truth else None, linewidth=2.2 if truth else 1.0,
                    linestyle="-" if truth else "--", label=method)  # fmt: skip
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(seq, fontsize=9)
        ax.set_xlabel("x (m)")
        ax.set_ylabel("z (m)")
        ax.grid(alpha=0.3)
    fig.axes[-1].legend(fontsize=7, loc="best")
    return fig


def plot_by_gap(metrics: dict[str, Any]) -> Figure:
    """RPE translation RMSE and success rate against the frame gap, per method."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    err, ok = fig.subplots(1, 2)
    for name, kind, m in _methods(metrics):
        gaps = [int(g.split("_")[1]) for g in m["rpe"]]
        t = [m["rpe"][f"gap_{g}"]["trans_m"]["rmse"] for g in gaps]
        style = {"linestyle": ":" if kind == "baseline" else "-", "marker": "o", "markersize": 3}
        err.plot(gaps, [np.nan if v is None else 1000 * v for v in t], label=name, **style)
        ok.plot(gaps, [m["success"][f"gap_{g}"] for g in gaps], label=name, **style)
    # Log scale: one method that loses track at a long gap (metres) must not flatten the rest (millimetres).
    err.set_yscale("log")
    err.set(xlabel="frame gap", ylabel="RPE translation RMSE (mm, log scale)", title="Error against gap")
    ok.set(xlabel="frame gap", ylabel="success rate", title="Success against gap", ylim=(-0.02, 1.02))
    for ax in (err, ok):
        ax.grid(alpha=0.3)
    ok.legend(fontsize=7, loc="best")
    return fig


def figures(pose: PoseInputs) -> dict[str, Figure]:
    """The section's figures by file name (none when the stage scored nothing)."""
    if not pose.metrics.get("enabled"):
        return {}
    drawn = {BY_GAP: plot_by_gap(pose.metrics)}
    if pose.positions:
        drawn[TRAJECTORIES] = plot_trajectories(pose.positions)
    return drawn


def section(pose: PoseInputs, drawn: set[str]) -> list[Block]:
    """The camera-motion section's blocks."""
    blocks: list[Block] = [Heading("Camera motion from the depth features")]
    m = pose.metrics
    if not m.get("enabled"):
        return blocks + [Paragraph(f"Not run: {m.get('note', 'the pose stage found no sequences')}.")]
    h, w = m["resolution"]
    blocks.append(Paragraph(
        f"Each pair of frames (target i, source i + gap) of {len(m['sequences'])} sequence(s) ({m['frames']} frames, "
        f"at {h}×{w}) is aligned by Levenberg–Marquardt on SE(3), coarse to fine, from the identity and without "
        "pose labels: the target's pixels are back-projected with its depth, moved, projected into the source, "
        "and the features compared there. Variants: which features (the depth network's **encoder** or image "
        "intensities, **rgb**), which depth (**predicted** by the network or the **sensor**'s), and the encoder "
        "at its untrained weights (the control). Baselines: standing still and Open3D's RGB-D odometry."
    ))  # fmt: skip
    if squashed := _squashed(m):
        blocks.append(Paragraph(squashed))
    if missing := _unavailable(m):
        blocks.append(Paragraph("Not scored here (unavailable): " + "; ".join(missing) + "."))
    blocks += [rpe_table(m), ate_table(m)]
    if BY_GAP in drawn:
        blocks.append(FigureRef(BY_GAP, "Translation error and success rate against the frame gap (the basin)."))
    if TRAJECTORIES in drawn:
        blocks.append(FigureRef(TRAJECTORIES, "Top-down view (x, z) of the chained gap-1 trajectories; black: "
                                "ground truth. All start at the true first pose."))  # fmt: skip
    return blocks + [Heading("Published TUM RGB-D results", level=3), published_table(m)]
