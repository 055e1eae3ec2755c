"""The report stage's library: a Markdown and a self-contained HTML report of a run.

    written = build_report(params, repo_root)   # reports/report.{md,html} + reports/figures/
    log_to_mlflow(params, repo_root, written)   # artifacts on train's run, which it then ends

Modules: `inputs` (read and check), `figures` (matplotlib), `tables` (pandas),
`published` (literature numbers), `context` (provenance), `document` (sections),
`render` (Markdown / HTML), `build` (orchestration, atomic placement).
"""

from pipeline.report.build import build_report, log_to_mlflow

__all__ = ["build_report", "log_to_mlflow"]
