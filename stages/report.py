"""Stage `report`: evaluation and training outputs -> reports/report.md, report.html, figures/.

    python -m stages.report

Reads evaluate's and train's outputs; writes `paths.report_md`, `report_html`,
`figures_dir` (all or nothing) and ends the MLflow run. Core: `pipeline.report.report.run`.
"""

from pipeline.report.report import run
from stages._common import run_stage

if __name__ == "__main__":
    run_stage("report", run)
