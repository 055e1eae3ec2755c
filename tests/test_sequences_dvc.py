"""The sequences stage under DVC and under kill -9.

Issue 18's "Done when": `dvc exp run` of the stage writes synthetic sequences in TUM's layout.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from pipeline.sequences.layout import list_sequences, read_sequence
from tests.e2e_helpers import TINY_SET, clone_project, run, set_args
from tests.test_faults import _kill_when, _stage, _workspace


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


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.*")}


@pytest.mark.slow
def test_kill_during_sequences_keeps_the_previous_output(tmp_path: Path) -> None:
    small = {"n": 2, "frames": 8, "height": 48, "width": 64}
    ws = _workspace(tmp_path, sequences={"source": "synthetic", "synthetic": small})
    assert _stage("sequences", ws).returncode == 0
    out = ws / "data/sequences"
    before = _digests(out)
    assert len(list_sequences(out)) == 2

    _workspace(tmp_path, sequences={"source": "synthetic", "synthetic": {**small, "frames": 60, "height": 96}})
    _kill_when("sequences", ws, lambda: len(list(ws.glob("data/.sequences.*.tmp/*/rgb/*.png"))) > 5)
    assert _digests(out) == before, "the previous sequences changed"

    proc = _stage("sequences", ws)
    assert proc.returncode == 0, proc.stderr
    assert all(len(read_sequence(f).frames) == 59 for f in list_sequences(out))
    assert not list(ws.glob("data/.sequences.*")), "staging folders left behind"
