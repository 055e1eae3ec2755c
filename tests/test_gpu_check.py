"""benchmarks/gpu_check.py: its no-CUDA answer, and every section run tiny on the CPU without MLflow or DVC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
# Makes `import mlflow` and `import dvc` fail in the process and its children (the GPU
# machine has neither): the check must run the stages without them.
BLOCKER = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "dvc"):
            raise ImportError(f"{name} is blocked: the GPU machine has no MLflow or DVC")
sys.meta_path.insert(0, _Block())
"""


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("DVC_ROOT", None)
    cmd = [sys.executable, str(SCRIPT), *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
    return proc, json.loads(last)


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", "import mlflow"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_without_cuda_it_says_so_and_exits_0(tmp_path: Path) -> None:
    proc, result = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CUDA is not available" in proc.stdout and result == {"cuda": False, "torch": torch.__version__}


@pytest.mark.slow
def test_every_section_runs_on_the_cpu_without_mlflow_or_dvc(tmp_path: Path) -> None:
    proc, result = _run(tmp_path, "--device", "cpu", "--quick")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert result["ok"] is True and result["cuda"] is False
    for section in ("e2e", "throughput", "mfu", "compile", "deterministic", "ddp"):
        assert result[section]["ok"] is True, (section, result[section])
    assert 0 < result["e2e"]["delta1"] <= 1 and result["e2e"]["bf16"] is False
    assert result["throughput"]["bf16"]["loop_images_per_s"] > 0 and result["throughput"]["off"]["ratio"] > 0
    rows = result["mfu"]["batches"]
    assert [r["batch"] for r in rows] == [2, 4] and rows[1]["gflops_per_step"] == pytest.approx(
        2 * rows[0]["gflops_per_step"], rel=0.02
    )  # FLOPs per step scale with the batch
    bound = result["mfu"]["bound"]  # no CPU peak, so MFU is unknown: the profile is printed
    assert bound["top_kernels"] and bound["convs"][0]["intensity"] > 0
    assert result["deterministic"]["max_abs_diff"] == 0.0
    assert result["ddp"]["identical"] is True and result["ddp"]["backend"] == "gloo"
