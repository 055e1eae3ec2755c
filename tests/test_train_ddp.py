"""Multi-process training: `torchrun --nproc_per_node 2 -m stages.train` on the CPU (gloo).

With no randomness in the step (no augmentation, dropout or batch statistics), 2 ranks
x batch 2 must train the same weights as 1 process x batch 4: each rank takes its half
of every global batch and DDP averages the gradients.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.training import train as training
from tests.conftest import REPO, shrunk_params, shrunk_raw
from tests.train_helpers import load_last, make_root

NO_RANDOMNESS = {"model": {"norm": "none", "dropout": 0.0}, "train": {"augment": False, "epochs": 2}}


def _torchrun_args(nproc: int) -> dict:
    """`torchrun --standalone --nproc_per_node N -m stages.train` as subprocess keyword arguments."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("DVC_ROOT", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "stages.train"]  # fmt: skip
    return {"args": cmd, "env": env}


def _torchrun(root: Path, nproc: int) -> subprocess.CompletedProcess:
    return subprocess.run(**_torchrun_args(nproc), cwd=root, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_two_gloo_ranks_train_like_one_process_with_the_global_batch(tmp_path: Path) -> None:
    sections = {k: dict(v) for k, v in NO_RANDOMNESS.items()}
    ddp_root = make_root(tmp_path / "ddp", n_train=8, n_val=3)
    raw = shrunk_raw(**{**sections, "train": {**sections["train"], "batch_size": 2}})
    (ddp_root / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = _torchrun(ddp_root, nproc=2)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "world size 2: global batch 4 (2 per rank)" in proc.stderr
    assert "not scaled with the global batch" in proc.stderr

    single_root = make_root(tmp_path / "single", n_train=8, n_val=3)
    training.run(shrunk_params(**{**sections, "train": {**sections["train"], "batch_size": 4}}), single_root)

    ddp, single = load_last(ddp_root), load_last(single_root)
    lines = (ddp_root / raw["paths"]["train_log"]).read_text().splitlines()
    assert [line.split("\t")[0] for line in lines[1:]] == ["1", "2"]  # written once, by rank 0
    assert not list(ddp_root.rglob("*.tmp"))
    for k, v in single["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-6, msg=f"{k} differs")
    for row_ddp, row_single in zip(ddp["history"], single["history"], strict=True):
        # Validation is sharded over ranks (2 + 1 images) and summed: same means as one process.
        for key in ("train_loss", "val_loss", "val_abs_rel", "val_delta1", "val_rmse"):
            assert row_ddp[key] == pytest.approx(row_single[key], rel=1e-4), key
    assert (ddp_root / raw["paths"]["model"]).is_file()


def _ddp_root(root: Path, epochs: int) -> Path:
    # Augmentation and dropout on: every rank's random streams must survive the restart.
    make_root(root, n_train=192, n_val=3)  # ~0.5 s epochs: time to kill between them
    raw = shrunk_raw(train={"epochs": epochs, "batch_size": 4, "augment": True}, model={"base_channels": 8})
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root


def _kill_all_in(cwd: Path) -> None:
    """SIGKILL every process working in `cwd`: torchrun starts its ranks in their own sessions."""
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc_dir / "cwd")) == cwd.resolve():
                os.kill(int(proc_dir.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone already, or not ours to read


@pytest.mark.slow
def test_killed_ddp_run_resumes_on_every_rank_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    epochs = 4
    whole = _ddp_root(tmp_path / "whole", epochs)
    assert _torchrun(whole, nproc=2).returncode == 0

    cut = _ddp_root(tmp_path / "cut", epochs)
    proc = subprocess.Popen(**_torchrun_args(2), cwd=cut, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (cut / "models" / "checkpoints" / "last.pt").exists():  # epoch 1 checkpointed
            _kill_all_in(cut)  # kill -9 torchrun and both ranks
            break
        time.sleep(0.02)
    proc.wait()
    killed_at = len(load_last(cut)["history"])
    assert 1 <= killed_at < epochs, "the run was not interrupted mid-way"

    resumed = _torchrun(cut, nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming from" in resumed.stderr, resumed.stderr[:3000]
    a, b = load_last(whole), load_last(cut)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=0, msg=f"{k} differs after resume")
    assert [r["epoch"] for r in b["history"]] == list(range(1, epochs + 1))


@pytest.mark.slow
def test_two_gloo_ranks_train_with_the_alignment_term(tmp_path: Path) -> None:
    # The term's encoder pass runs beside DDP's forward; both reach the same parameters, which DDP
    # must average once per step. Each rank draws its own pairs (seeded by rank).
    from pipeline.sequences import align_data

    root = make_root(tmp_path, n_train=8, n_val=3)
    align = {"weight": 1.0, "sequences": 1, "frames": 4, "gaps": [1, 2], "pairs_per_step": 1, "iterations": 2}
    raw = shrunk_raw(train={"epochs": 1, "batch_size": 2}, loss={"align": {**shrunk_raw()["loss"]["align"], **align}})
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    align_data.run(shrunk_params(loss=raw["loss"]), root)
    proc = _torchrun(root, nproc=2)
    assert proc.returncode == 0, proc.stderr[-4000:]
    header, row = (root / raw["paths"]["train_log"]).read_text().splitlines()
    value = dict(zip(header.split("\t"), row.split("\t"), strict=True))["train_align_loss"]
    assert float(value) > 0
