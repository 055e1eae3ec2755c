"""The report's figures, drawn with matplotlib's object API (no pyplot: no global state, no GUI).

Each `plot_*` function returns a `Figure`; `save_png` writes it at a resolution that keeps
the self-contained HTML report small (~100 dpi).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.colours import DEPTH_CMAP, ERROR_CMAP, ERROR_VMAX, HOLE_COLOUR, abs_rel_map, colormap, hole_mask
from pipeline.metrics import eigen_crop_bounds
from pipeline.report.tables import metric_label

DPI = 100


def save_png(fig: Figure, path: Path) -> Path:
    """Writes `fig` as a PNG (white background, `DPI`) and returns the path."""
    # A tight box costs a second draw, but the image grid's fixed aspect ratios can push the
    # colour-bar labels past the figure's edge, which constrained layout alone does not prevent.
    fig.savefig(path, format="png", dpi=DPI, facecolor="white", bbox_inches="tight", pad_inches=0.08)
    return path


def _style(ax: Axes, title: str, xlabel: str = "", ylabel: str = "") -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _plot_series(ax: Axes, x: pd.Series, y: pd.Series, label: str, best: str | None = None, **kw: Any) -> None:
    ok = y.notna()  # validation may run every N epochs only
    if not ok.any():
        return
    many = ok.sum() > 30
    ax.plot(x[ok], y[ok], marker=None if many else "o", markersize=3, label=label, **kw)
    if best is not None:
        i = y[ok].idxmax() if best == "max" else y[ok].idxmin()
        ax.plot([x[i]], [y[i]], marker="*", markersize=12, color=ax.lines[-1].get_color(), linestyle="none")
        ax.annotate(f"{y[i]:.3f}", (x[i], y[i]), textcoords="offset points", xytext=(4, 6), fontsize=8)


def plot_training_curves(log: pd.DataFrame) -> Figure:
    """Loss (train vs val) and validation AbsRel, RMSE, δ1 per epoch; ★ marks each best epoch."""
    fig = Figure(figsize=(13, 3.3), layout="constrained")
    axes = fig.subplots(1, 4)
    epoch = log["epoch"]
    _plot_series(axes[0], epoch, log["train_loss"], "train")
    _plot_series(axes[0], epoch, log["val_loss"], "validation", best="min")
    _style(axes[0], "Loss", "epoch")
    losses = log[["train_loss", "val_loss"]].to_numpy(float)
    losses = losses[np.isfinite(losses)]
    if losses.size and losses.min() > 0 and losses.max() / losses.min() > 20:
        axes[0].set_yscale("log")  # early epochs would otherwise flatten the rest of the curve
    axes[0].legend(frameon=False)
    for ax, name, colour in zip(axes[1:], ("abs_rel", "rmse", "delta1"), ("C2", "C3", "C4"), strict=True):
        best = "max" if name == "delta1" else "min"
        _plot_series(ax, epoch, log[f"val_{name}"], name, best=best, color=colour)
        _style(ax, f"Validation {metric_label(name)}", "epoch", "m" if name == "rmse" else "")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def _row_label(predictions: dict[str, np.ndarray], per_image: pd.DataFrame | None, i: int) -> str:
    scene, scene_type = str(predictions["scene"][i]), str(predictions["scene_type"][i])
    # NYU scene names start with their type ("bedroom_0012"); name the type only when they don't.
    label = scene if scene.startswith(scene_type) else f"{scene}\n({scene_type})"
    if per_image is not None:
        match = per_image.loc[per_image["index"] == int(predictions["index"][i]), "abs_rel"]
        if len(match) and np.isfinite(match.iloc[0]):
            label += f"\nAbsRel {match.iloc[0]:.3f}"
    return label


def depth_vmax(gt: np.ndarray, pred: np.ndarray, max_depth: float) -> float:
    """Shared colour-scale top for gt and prediction: the largest valid depth shown, at most `max_depth`."""
    valid = np.concatenate([gt[np.isfinite(gt) & (gt > 0)], pred[np.isfinite(pred)]])
    top = float(valid.max()) if valid.size else max_depth
    return min(top, max_depth) if top > 0 else max_depth


def _image_axes(ax: Axes) -> None:
    ax.set_facecolor(HOLE_COLOUR)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_qualitative_grid(
    predictions: dict[str, np.ndarray], max_depth: float, crop: str = "none", per_image: pd.DataFrame | None = None
) -> Figure:
    """RGB | ground truth | prediction | abs-rel error, one row per kept test image.

    Ground truth and prediction share one colour scale (0 to `depth_vmax`) and colour bar;
    the error map has its own (0 to `ERROR_VMAX`). Ground-truth holes are black.
    With `crop == "eigen"` the error map outlines the evaluated region.
    """
    gt, pred, rgb = predictions["gt"], predictions["pred"], predictions["rgb"]  # (K,H,W), (K,H,W), (K,H,W,3)
    k, h, w = gt.shape
    # 11 x ~2 inches per row at 100 dpi: 4 panels of ~240 px; images keep their aspect, so the
    # height follows the panel width left after labels and gaps (~1.4 in), or rows drift apart.
    fig_w = 11.0
    image_h = (fig_w - 1.4) / 4 * h / w
    fig = Figure(figsize=(fig_w, k * (image_h + 0.08) + 1.1), layout="constrained")
    axes = np.asarray(fig.subplots(k, 4, squeeze=False))
    vmax = depth_vmax(gt, pred, max_depth)
    depth_cmap, err_cmap = colormap(DEPTH_CMAP), colormap(ERROR_CMAP)
    for i in range(k):
        gt_i = np.ma.masked_array(gt[i], mask=hole_mask(gt[i]))
        axes[i, 0].imshow(rgb[i])
        im_depth = axes[i, 1].imshow(gt_i, cmap=depth_cmap, vmin=0, vmax=vmax)
        axes[i, 2].imshow(pred[i], cmap=depth_cmap, vmin=0, vmax=vmax)
        im_err = axes[i, 3].imshow(abs_rel_map(gt[i], pred[i]), cmap=err_cmap, vmin=0, vmax=ERROR_VMAX)
        if crop == "eigen":
            top, bottom, left, right = eigen_crop_bounds(h, w)
            box = Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, ls="--", lw=1, ec="C0")
            axes[i, 3].add_patch(box)
        for ax in axes[i]:
            _image_axes(ax)
        axes[i, 0].set_ylabel(_row_label(predictions, per_image, i), fontsize=9)
    for ax, title in zip(axes[0], ("RGB", "Ground truth", "Prediction", "Abs rel error"), strict=True):
        ax.set_title(title, fontsize=11)
    fig.colorbar(im_depth, ax=axes[:, 1:3], location="bottom", shrink=0.7, aspect=40, label="depth (m)")
    fig.colorbar(im_err, ax=axes[:, 3], location="bottom", extend="max", aspect=20, label="|pred − gt| / gt")
    return fig


def plot_scene_types(per_scene_type: pd.DataFrame, overall: dict[str, float]) -> Figure:
    """AbsRel and δ1 per scene type (bars, with image counts), beside the all-images mean."""
    df = per_scene_type.sort_values("abs_rel", ascending=False).reset_index(drop=True)  # best on top
    labels = [f"{t}  (n={int(n)})" for t, n in zip(df["scene_type"], df["n_images"], strict=True)]
    fig = Figure(figsize=(10, 1.4 + 0.32 * len(df)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, name, colour in zip(axes, ("abs_rel", "delta1"), ("C2", "C4"), strict=True):
        bars = ax.barh(labels, df[name], color=colour, alpha=0.85)
        ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=8)
        if isinstance(overall.get(name), (int, float)) and np.isfinite(overall[name]):
            ax.axvline(overall[name], color="k", ls="--", lw=1, label="mean over all test images")
        _style(ax, metric_label(name))
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.12)  # room for the value labels
    axes[1].set_xlim(0, 1.1)
    if axes[0].get_lines():
        fig.legend(handles=axes[0].get_lines()[:1], loc="outside lower center", frameon=False, fontsize=9)
    return fig


def plot_error_by_depth(error_by_depth: pd.DataFrame) -> Figure:
    """AbsRel and RMSE against ground-truth depth (bin centres), over the pixel count per bin."""
    df = error_by_depth
    centre = (df["depth_bin_lo"] + df["depth_bin_hi"]) / 2
    width = (df["depth_bin_hi"] - df["depth_bin_lo"]) * 0.9
    fig = Figure(figsize=(8, 5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    top.plot(centre, df["abs_rel"], "o-", color="C2", label=metric_label("abs_rel"))
    _style(top, "Error by ground-truth depth", ylabel=metric_label("abs_rel"))
    right = top.twinx()
    right.plot(centre, df["rmse"], "s--", color="C3", label=f"{metric_label('rmse')} (m)")
    right.set_ylabel(f"{metric_label('rmse')} (m)", color="C3")
    top.set_ylabel(metric_label("abs_rel"), color="C2")
    right.spines[["top"]].set_visible(False)
    handles = top.get_lines() + right.get_lines()
    right.legend(handles, [h.get_label() for h in handles], loc="upper left", framealpha=0.9, edgecolor="none")
    top.set_ylim(bottom=0)  # errors from 0, so bins compare by ratio, not by an offset axis
    right.set_ylim(bottom=0)
    scale, unit = _count_unit(float(df["n_pixels"].max()))
    bottom.bar(centre, df["n_pixels"] / scale, width=width, color="C0", alpha=0.7)
    _style(bottom, "", "ground-truth depth (m)", f"pixels{unit}")
    bottom.set_title("Valid test pixels per bin", fontsize=10)
    return fig


def _count_unit(largest: float) -> tuple[float, str]:
    for scale, unit in ((1e6, " (millions)"), (1e3, " (thousands)")):
        if largest >= scale:
            return scale, unit
    return 1.0, ""
