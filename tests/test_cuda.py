"""What only a GPU runs: bf16 autocast, torch.compile, deterministic CUDA kernels, NCCL.

Marked `cuda`: skipped with the reason on a machine without a CUDA GPU (tests/conftest.py),
run by `make test` wherever one is visible.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.training import train as training
from tests.conftest import REPO, shrunk_params, shrunk_raw, write_params
from tests.train_helpers import assert_same_state, load_best_state, load_last, make_root

pytestmark = pytest.mark.cuda

ON_CUDA = {"device": "cuda", "amp": "auto"}  # auto: bf16 autocast on CUDA


def _finite_history(root: Path) -> list[dict]:
    history = load_last(root)["history"]
    for row in history:
        for key, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value), (key, row)
    return history


def test_bf16_training_on_cuda_is_finite_and_scored_in_float32(tmp_path: Path) -> None:
    result = training.run(shrunk_params(train=ON_CUDA), make_root(tmp_path))
    assert result["device"].startswith("cuda")
    history = _finite_history(tmp_path)
    assert len(history) == 2 and 0 <= history[-1]["val_delta1"] <= 1


def test_compile_on_cuda_trains(tmp_path: Path) -> None:
    training.run(shrunk_params(train={**ON_CUDA, "compile": True, "epochs": 1}), make_root(tmp_path))
    assert len(_finite_history(tmp_path)) == 1


def test_deterministic_cuda_runs_repeat_bit_for_bit(tmp_path: Path) -> None:
    params = shrunk_params(train={**ON_CUDA, "deterministic": True, "augment": True})
    training.run(params, make_root(tmp_path / "a"))
    training.run(params, make_root(tmp_path / "b"))
    assert_same_state(load_best_state(tmp_path / "a"), load_best_state(tmp_path / "b"))


def test_torchrun_on_nccl_matches_a_plain_run(tmp_path: Path) -> None:
    sections = {"train": {**ON_CUDA, "deterministic": True, "augment": False}, "model": {"dropout": 0.0}}
    ddp_root = make_root(tmp_path / "ddp")
    write_params(ddp_root, shrunk_raw(**sections))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "stages.train"]
    proc = subprocess.run(cmd, cwd=ddp_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain_root = make_root(tmp_path / "plain")
    training.run(shrunk_params(**sections), plain_root)
    for k, v in load_last(plain_root)["model"].items():
        torch.testing.assert_close(load_last(ddp_root)["model"][k], v, msg=f"{k} differs")


def test_the_alignment_term_trains_on_cuda_in_bf16(tmp_path: Path) -> None:
    from pipeline.sequences import align_data

    align = {"weight": 1.0, "sequences": 1, "frames": 4, "gaps": [1, 2], "pairs_per_step": 2, "iterations": 2}
    params = shrunk_params(train=ON_CUDA, loss={"align": {**shrunk_raw()["loss"]["align"], **align}})
    root = make_root(tmp_path)
    align_data.run(params, root)
    result = training.run(params, root)
    assert result["device"].startswith("cuda")
    history = _finite_history(tmp_path)
    assert all(row["train_align_loss"] > 0 for row in history)
