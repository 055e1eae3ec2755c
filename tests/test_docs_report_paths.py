"""The report speaks in repository paths: no machine's absolute path of the processed data (issue 20, §4)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.report.document import repo_relative
from pipeline.report.report import build_report
from tests.report_fixtures import write_inputs

PROCESSED = Path("data/processed")


def test_absolute_paths_into_the_processed_folder_become_repository_paths():
    for root in ("/tmp/pytest-7/run0", "/home/me/nyu-depth", "/a"):
        text = f"median of {root}/data/processed/train.h5 depth"
        assert repo_relative(text, PROCESSED) == "median of data/processed/train.h5 depth"
    # Already relative, or not a path into the processed folder: unchanged.
    for text in ("median of data/processed/train.h5 depth", "median training depth", "/data/raw/x.mat"):
        assert repo_relative(text, PROCESSED) == text
    assert repo_relative("(/x/y/out/train.h5)", Path("out")) == "(out/train.h5)"


def test_report_summary_names_train_h5_by_its_repository_path(tmp_path, params):
    write_inputs(tmp_path, params)
    metrics_path = tmp_path / params.paths.metrics
    metrics = json.loads(metrics_path.read_text())
    # What evaluate records: the absolute path it read (a queued experiment's temp copy, say).
    metrics["baseline_source"] = f"median of {tmp_path / params.paths.processed_dir / 'train.h5'} depth"
    metrics_path.write_text(json.dumps(metrics))
    out = build_report(params, tmp_path)
    for page in (out["report_md"], out["report_html"]):
        text = page.read_text()
        assert f"(median of {params.paths.processed_dir.as_posix()}/train.h5 depth)" in text
        assert str(tmp_path) not in text
