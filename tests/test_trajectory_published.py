"""The published TUM RGB-D table (pipeline/trajectory/published.py): well-formed, labelled, transcribed consistently."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np
import pytest

from pipeline.trajectory.published import PUBLISHED_TUM, STATED_AVERAGES, published_rows


def test_every_row_carries_its_protocol_and_source() -> None:
    seen = set()
    for r in PUBLISHED_TUM:
        assert re.fullmatch(r"fr[123]/[a-z0-9_]+", r.sequence), r
        assert 0 < r.ate_m < 2.0, r
        assert r.input in ("RGB-D", "monocular") and r.alignment in ("SE3", "Sim3")
        assert r.frames and r.source and re.search(r"(19|20)\d\d", r.source)
        # A monocular trajectory has no scale of its own: its ATE is only defined after Sim(3).
        assert r.input == "RGB-D" or r.alignment == "Sim3", r
        assert (r.method, r.sequence) not in seen, f"duplicate {r.method} {r.sequence}"
        seen.add((r.method, r.sequence))
    methods = {r.method.split(" ")[0] for r in PUBLISHED_TUM}
    assert {"ORB-SLAM2", "ElasticFusion", "DVO-SLAM", "DeepV2D", "DROID-SLAM"} <= methods


@pytest.mark.parametrize("method", sorted(STATED_AVERAGES))
def test_rows_reproduce_the_average_the_paper_prints(method: str) -> None:
    values = [r.ate_m for r in PUBLISHED_TUM if r.method == method]
    assert len(values) == 9  # the nine fr1 sequences
    assert round(float(np.mean(values)), 3) == pytest.approx(STATED_AVERAGES[method], abs=1e-9)


def test_rows_are_json_ready_for_the_report() -> None:
    rows = published_rows()
    assert rows == json.loads(json.dumps(rows))
    by_seq = defaultdict(list)
    for row in rows:
        assert set(row) == {"method", "sequence", "ate_m", "input", "alignment", "frames", "source"}
        by_seq[row["sequence"]].append(row["method"])
    assert len(by_seq["fr1/desk"]) >= 5  # classical RGB-D and learned monocular side by side
