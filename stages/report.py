"""Stage `report`: evaluation and training outputs -> reports/report.md, report.html, figures/.

    python -m stages.report

Reads `paths.metrics`, `per_image`, `per_scene_type`, `error_by_depth`, `predictions`,
`train_log`, `run_id`; writes `paths.report_md`, `report_html`, `figures_dir` (all or
nothing). The HTML embeds its figures and styles, so it opens offline. Logs the report
to train's MLflow run and ends that run: this is the pipeline's last stage.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.config import Params
from pipeline.report import build_report, log_to_mlflow
from stages._common import run_stage

log = logging.getLogger("pipeline")


def body(params: Params, repo_root: Path | None = None) -> dict:
    """Builds the report from the repository root (DVC runs stages there), then logs it to MLflow."""
    root = repo_root or Path.cwd()
    written = build_report(params, root)
    log_to_mlflow(params, root, written)
    log.info("open %s in a browser (works offline)", written["report_html"])
    return written


def main() -> None:
    """Entry point for `python -m stages.report` (DVC's cmd)."""
    run_stage("report", body)


if __name__ == "__main__":
    main()
