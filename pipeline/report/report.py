"""The report stage: `run(params, root)` builds the report, puts it in place atomically, logs it to MLflow.

Atomicity: every input is read and every figure drawn (into a hidden temporary folder
beside `figures_dir`) before anything at an output path changes. Only then are the
figures folder swapped in by rename and report.md / report.html renamed onto their
paths, so a report killed or failing half-way leaves the previous report untouched.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pipeline.config import Params
from pipeline.io import atomic_dir, atomic_path
from pipeline.report import figures, pose_section
from pipeline.report.context import collect_provenance
from pipeline.report.document import CURVES, DEPTH, GRID, SCENES, build_document, report_title
from pipeline.report.inputs import ReportInputs, load_inputs
from pipeline.report.markup import render_html, render_markdown
from pipeline.tracking import resume_run

log = logging.getLogger("pipeline")


def write_figures(inputs: ReportInputs, folder: Path) -> list[Path]:
    """Draws every figure into `folder`; returns the PNG paths (no grid when no examples were kept)."""
    m = inputs.metrics
    # Call through the module so a test can make one figure fail half-way.
    drawn = {CURVES: figures.plot_training_curves(inputs.train_log)}
    if len(inputs.predictions["index"]):
        drawn[GRID] = figures.plot_qualitative_grid(
            inputs.predictions, float(m["protocol"]["max_depth"]), str(m["protocol"]["crop"]), inputs.per_image
        )
    drawn[SCENES] = figures.plot_scene_types(inputs.per_scene_type, m)
    drawn[DEPTH] = figures.plot_error_by_depth(inputs.error_by_depth)
    drawn |= pose_section.figures(inputs.pose)
    return [figures.save_png(fig, folder / name) for name, fig in drawn.items()]


def build_report(params: Params, repo_root: str | Path) -> dict[str, Any]:
    """Writes report.md, report.html and the figures folder from evaluate's and train's outputs.

    Args:
        params: the pipeline params (paths, and the params shown under Provenance).
        repo_root: the repository root; `params.paths` are relative to it.

    Returns:
        {"report_md": Path, "report_html": Path, "figures_dir": Path, "figures": [Path, ...]}.

    Raises:
        PipelineError: an input is missing or malformed (nothing is written then).
    """
    repo_root = Path(repo_root)
    paths = params.paths.resolve(repo_root)
    inputs = load_inputs(paths)
    prov = collect_provenance(params, repo_root, inputs.metrics, inputs.run_id)
    # Everything is built aside (figures in a staging folder, texts in temp files); on
    # success the contexts exit in reverse: the folder is swapped in, then both texts are
    # renamed. A failure or kill while building leaves the previous report as it was.
    with (
        atomic_path(paths.report_md) as tmp_md,
        atomic_path(paths.report_html) as tmp_html,
        atomic_dir(paths.figures_dir) as staging,
    ):
        pngs = write_figures(inputs, staging)
        blocks = build_document(inputs, params, prov, drawn={p.name for p in pngs})
        title = report_title(str(inputs.metrics["source"]))
        figures_rel = Path(os.path.relpath(paths.figures_dir, paths.report_md.parent)).as_posix()
        page = render_html(blocks, title, staging)
        tmp_md.write_text(render_markdown(blocks, title, figures_rel), encoding="utf-8")
        tmp_html.write_text(page, encoding="utf-8")
    log.info("report: %s (%.1f MB), %s, %d figures", paths.report_html, len(page) / 1e6, paths.report_md, len(pngs))
    return {
        "report_md": paths.report_md,
        "report_html": paths.report_html,
        "figures_dir": paths.figures_dir,
        "figures": [paths.figures_dir / p.name for p in pngs],
    }


def log_to_mlflow(params: Params, repo_root: str | Path, written: dict[str, Any]) -> None:
    """Adds the report to train's MLflow run (report.html, report.md, figures/), then ends the run.

    The report is the pipeline's last stage, so this is where the run is closed. Tracking
    never fails the stage (a disabled or unreachable store is a no-op).
    """
    tracker = resume_run(params, params.paths.resolve(repo_root).run_id, repo_root)
    try:
        # At the artifact root, beside metrics.json: report.md's relative figure links still work.
        tracker.log_artifact(written["report_html"])
        tracker.log_artifact(written["report_md"])
        tracker.log_artifacts(written["figures_dir"], artifact_path=written["figures_dir"].name)
    finally:
        tracker.end()


def run(params: Params, root: Path) -> dict[str, Any]:
    """Builds the report under `root` (see `build_report`), then adds it to train's MLflow run and ends it."""
    written = build_report(params, root)
    log_to_mlflow(params, root, written)
    log.info("open %s in a browser (works offline)", written["report_html"])
    return written
