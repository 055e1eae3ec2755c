"""Issue 18's "Done when": `dvc exp run` of the sequences stage writes synthetic sequences in TUM's layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.sequences.layout import list_sequences, read_sequence
from tests.e2e_helpers import TINY_SET, clone_project, run, set_args


@pytest.mark.slow
def test_dvc_exp_run_writes_two_synthetic_sequences_in_the_tum_layout(tmp_path: Path) -> None:
    repo = clone_project(tmp_path / "proj")
    overrides = [*TINY_SET, "sequences.source=synthetic", "sequences.synthetic.n=2", "sequences.synthetic.frames=8"]
    out = run(["dvc", "exp", "run", *set_args(overrides), "sequences"], repo).stdout
    assert "Running stage 'sequences'" in out and "Running stage 'download'" not in out
    root = repo / yaml.safe_load((repo / "params.yaml").read_text())["paths"]["sequences"]
    folders = list_sequences(root)
    assert len(folders) == 2
    for folder in folders:
        names = {p.name for p in folder.iterdir()}
        assert {"rgb", "depth", "rgb.txt", "depth.txt", "groundtruth.txt", "calibration.txt"} <= names
        assert len(list((folder / "rgb").glob("*.png"))) == 8 and len(list((folder / "depth").glob("*.png"))) == 7
        assert len(read_sequence(folder).frames) == 7
    assert "Running stage" not in run(["dvc", "repro", "sequences"], repo).stdout  # up to date
