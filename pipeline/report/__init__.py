"""The report: a Markdown and a self-contained HTML report of a run.

The stage's core is `pipeline.report.report.run(params, root)`:

    written = build_report(params, root)   # reports/report.{md,html} + reports/figures/
    log_to_mlflow(params, root, written)   # artifacts on train's run, which it then ends

Modules: `inputs` (read and check), `figures` (matplotlib), `tables` (pandas),
`published` (literature numbers), `context` (provenance), `document` (sections),
`markup` (Markdown / HTML), `report` (the stage: orchestration, atomic placement).
"""
