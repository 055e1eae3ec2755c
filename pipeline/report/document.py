"""The report's content: sections of blocks, in reading order, from the checked inputs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.config import Params
from pipeline.metrics import METRIC_NAMES, eigen_crop_bounds
from pipeline.report import pose_section, published
from pipeline.report.context import Provenance
from pipeline.report.figures import ERROR_VMAX
from pipeline.report.inputs import ReportInputs
from pipeline.report.markup import Block, Bullets, FigureRef, Heading, Paragraph
from pipeline.report.tables import (
    error_by_depth_table,
    fmt,
    headline_table,
    key_value_table,
    metric_label,
    params_table,
    scene_type_table,
)

# File names of the figures inside the figures folder.
CURVES, GRID, SCENES, DEPTH = "training_curves.png", "qualitative.png", "scene_types.png", "error_by_depth.png"
SOURCE_NAMES = {
    "nyudv2": "NYU Depth V2",
    "synthetic": "synthetic NYUDv2-layout scenes",
    "folder": "RGB-D files from list files",
}


def report_title(source: str) -> str:
    """The report's title, naming the data source."""
    return f"Monocular depth estimation — {SOURCE_NAMES.get(source, source)}"


def _resolution(res: Any) -> str:
    if isinstance(res, (list, tuple)) and len(res) == 2:
        return f"{res[0]}×{res[1]}"
    return str(res).replace("x", "×")


def protocol_text(metrics: dict[str, Any], params: Params) -> str:
    """The evaluation protocol in words, from metrics.json (what evaluate actually did)."""
    p = metrics["protocol"]
    gt = {
        "raw": "the **raw** Kinect depth (pixels without a measurement are excluded)",
        "filled": "the **filled** (in-painted) depth of the labeled set",
    }.get(p["gt"], f"'{p['gt']}' ground truth")
    if p["gt"] == "filled" and metrics.get("test_depth_filled") is False:
        # A folder source's test files carry one depth: `depth` is the raw depth there.
        gt = (
            "the test files' depth, which is **raw**: they have no separately filled depth, so `eval.gt: filled` "
            "scores the raw depth here (pixels without a measurement are excluded)"
        )
    eval_res = p.get("eval_resolution", p.get("resolution"))
    crop = {
        "eigen": "inside the **Eigen crop** (rows 45–471, columns 41–601 of the 480×640 frame"
        + _scaled_crop(eval_res)
        + ")",
        "none": "over the **full frame** (no crop)",
    }.get(p["crop"], f"with crop '{p['crop']}'")
    tta = "with" if p["flip_tta"] else "**without**"
    at = f" at {_resolution(eval_res)}" if eval_res is not None else ""
    train_res = p.get("train_resolution", (params.preprocess.height, params.preprocess.width))
    return (
        f"Protocol: {metrics['n_images']} test images{at}, scored against {gt}, {crop}, {tta} horizontal-flip "
        f"test-time augmentation, on ground-truth depths between {p['min_depth']:g} and {p['max_depth']:g} m "
        "(predictions clipped to that range). Metrics are computed per image, then averaged over images. "
        f"The model was trained at {_resolution(train_res)} and its predictions are upsampled to the test "
        "resolution before scoring."
    )


def _scaled_crop(eval_res: Any) -> str:
    """The crop's bounds at the test images' size where that is not 480×640 (it scales with them), else ""."""
    if eval_res is None or tuple(eval_res) == (480, 640):
        return ""
    top, bottom, left, right = eigen_crop_bounds(*eval_res)
    return f"; rows {top}–{bottom}, columns {left}–{right} of the {_resolution(eval_res)} test images"


def repo_relative(text: str, processed_dir: Path) -> str:
    """`text` with every absolute path into `processed_dir` (relative to the repository) shown from the repository.

    evaluate records where the baseline's depth came from as the path it read
    (`/tmp/…/data/processed/train.h5`); a reader on another machine needs the repository's
    path (`data/processed/train.h5`). Text without such a path is returned unchanged.
    """
    if processed_dir.is_absolute():
        return text
    rel = re.escape(processed_dir.as_posix().strip("/"))
    return re.sub(rf"(?<![\w.~-])/\S*?/(?={rel}/)", "", text)


def _baseline_words(metrics: dict[str, Any], processed_dir: Path) -> str:
    """What the constant baseline predicts, with its depth and origin when evaluate recorded them."""
    depth = metrics.get("baseline_depth")
    if not isinstance(depth, (int, float)):
        return "predicts one depth for every pixel of every image"
    words = f"predicts {depth:.2f} m for every pixel of every image"
    source = metrics.get("baseline_source")
    return f"{words} ({repo_relative(str(source), processed_dir)})" if source else words


def summary_section(metrics: dict[str, Any], params: Params) -> list[Block]:
    """The headline: the model against the constant baseline, and the protocol in words."""
    base = metrics["baseline"]
    lead = (
        f"On {metrics['n_images']} test images the U-Net reaches **δ1 = {fmt(metrics['delta1'])}** and "
        f"**AbsRel = {fmt(metrics['abs_rel'])}** (RMSE {fmt(metrics['rmse'])} m), against δ1 = {fmt(base['delta1'])} "
        f"and AbsRel = {fmt(base['abs_rel'])} (RMSE {fmt(base['rmse'])} m) for a constant-depth baseline, which "
        f"{_baseline_words(metrics, params.paths.processed_dir)}: a model that has learnt nothing from the image."
    )
    wins = sum(t[0] == 0 for t in headline_table(metrics).bold)
    verdict = f"The model beats the constant on {wins} of {len(METRIC_NAMES)} metrics."
    return [
        Heading("Summary"),
        Paragraph(f"{lead} {verdict}"),
        headline_table(metrics),
        Paragraph(protocol_text(metrics, params)),
    ]


def published_section(metrics: dict[str, Any], params: Params) -> list[Block]:
    """Published NYUDv2 results beside ours, each with its data and protocol (real NYUDv2 only)."""
    blocks: list[Block] = [Heading("Published NYUDv2 results")]
    test_source = str(metrics.get("test_source", metrics["source"]))  # the folder source may test on NYU's 654
    if not published.is_comparable(test_source):
        return blocks + [Paragraph(published.omitted_note(test_source))]
    p = metrics["protocol"]
    crop = {"eigen": "Eigen crop", "none": "no crop"}.get(p["crop"], f"{p['crop']} crop")
    ours_protocol = f"{p['gt']} ground truth, {crop}, {p['min_depth']:g}–{p['max_depth']:g} m"
    folder = metrics["source"] == "folder"
    trained_on = "the frames of `data.folder.train_list`" if folder else "the 795 labeled training images"
    ours_training = f"{trained_on}, less the validation scenes ({params.preprocess.val_fraction:.0%})"
    intro = (
        f"For context only — **{published.NOT_REPRODUCED}**. These models were trained on tens of thousands of "
        f"frames from NYUDv2's raw videos with large pre-trained encoders; ours sees only {trained_on}, "
        "from scratch. Protocols also differ (raw or filled ground truth, crop, flip test-time "
        "augmentation, metrics averaged per image or pooled over all pixels), so differences of a few "
        "hundredths are not meaningful: compare rows whose last three columns agree."
    )
    table = published.published_table(metrics, ours_training, ours_protocol, bool(p["flip_tta"]))
    return blocks + [Paragraph(intro), table, Paragraph("References:"), Bullets(tuple(published.references()))]


def training_section(inputs: ReportInputs) -> list[Block]:
    """The training curves and the best validation epoch."""
    log = inputs.train_log
    val = log["val_abs_rel"]
    text = f"{len(log)} epochs."
    if val.notna().any():
        best = val.idxmin()
        text += f" Best validation AbsRel {val[best]:.3f} at epoch {int(log['epoch'][best])} (★ marks each best epoch)."
    caption = "Loss per epoch (train vs validation) and validation metrics per epoch, from train_log.tsv."
    return [Heading("Training"), Paragraph(text), FigureRef(CURVES, caption)]


def examples_section(inputs: ReportInputs, has_grid: bool) -> list[Block]:
    """The qualitative grid of the kept test images (RGB, ground truth, prediction, error)."""
    blocks: list[Block] = [Heading("Examples")]
    if not has_grid:
        return blocks + [Paragraph("No test images were kept for examples (`eval.n_examples` is 0).")]
    p = inputs.metrics["protocol"]
    caption = (
        "Fixed test images, evenly spaced through the test set (predictions.npz). Ground truth and prediction "
        "share one colour scale in metres; black = no ground truth. The error map is |pred − gt| / gt, "
        f"saturated at {ERROR_VMAX:g}."
    )
    caption += " Dashed blue: the evaluated (Eigen crop) region." if p["crop"] == "eigen" else ""
    return blocks + [FigureRef(GRID, caption)]


def breakdown_sections(inputs: ReportInputs) -> list[Block]:
    """Metrics by scene type and error by ground-truth depth."""
    scenes: list[Block] = [
        Heading("By scene type"),
        FigureRef(
            SCENES,
            f"{metric_label('abs_rel')} and {metric_label('delta1')} per scene type (n = images); "
            "dashed: mean over all test images.",
        ),
        scene_type_table(inputs.per_scene_type),
    ]
    df = inputs.error_by_depth
    bin_m = float(df["depth_bin_hi"].iloc[0] - df["depth_bin_lo"].iloc[0])
    depth: list[Block] = [
        Heading("Error by depth"),
        FigureRef(DEPTH, f"Error against ground-truth depth in {bin_m:g} m bins, and the valid pixels in each bin."),
        error_by_depth_table(inputs.error_by_depth),
    ]
    return scenes + depth


def provenance_section(prov: Provenance) -> list[Block]:
    """Where the report comes from: code, data, device, runs, and every param."""
    blocks: list[Block] = [
        Heading("Provenance"),
        key_value_table(prov.facts(), "Where this report comes from."),
        params_table(prov.params),
    ]
    return blocks


def build_document(inputs: ReportInputs, params: Params, prov: Provenance, drawn: set[str]) -> list[Block]:
    """Every section of the report, in order; `drawn` names the figures that were drawn."""
    return [
        *summary_section(inputs.metrics, params),
        *published_section(inputs.metrics, params),
        *training_section(inputs),
        *examples_section(inputs, GRID in drawn),
        *breakdown_sections(inputs),
        *pose_section.section(inputs.pose, drawn),
        *provenance_section(prov),
    ]
