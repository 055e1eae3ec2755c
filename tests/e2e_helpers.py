"""Helpers for end-to-end tests that run DVC on a throw-away copy of this repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

# Overrides that shrink the whole pipeline to seconds on a CPU.
TINY_SET = [
    "data.source=synthetic",
    "data.synthetic.n_images=10",
    "data.synthetic.height=48",  # rendered small: ~0.01 CPU-s a frame (full-size frames: test_dvc_deps, test_e2e)
    "data.synthetic.width=64",
    "preprocess.height=32",
    "preprocess.width=48",
    "model.base_channels=4",
    "model.depth=2",
    "train.epochs=2",
    "train.batch_size=4",
    "train.warmup_epochs=0",
    "train.device=cpu",
    "eval.n_examples=2",
    "sequences.source=synthetic",  # the default fetches TUM RGB-D: tests never touch the internet
    "sequences.synthetic.n=2",
    "sequences.synthetic.frames=8",
    "sequences.synthetic.height=48",
    "sequences.synthetic.width=64",
    "pose.gaps=[1,2]",
    "pose.device=cpu",
]


def set_args(overrides: list[str]) -> list[str]:
    """["a=1", "b=2"] -> ["-S", "a=1", "-S", "b=2"] for `dvc exp run`."""
    return [arg for kv in overrides for arg in ("-S", kv)]


def clone_project(dest: Path) -> Path:
    """Copies the project's tracked and untracked-but-not-ignored files into a fresh git repo.

    Like a fresh clone, but it also carries uncommitted work, so the tests check the tree
    they run in.
    """
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "init")
    return dest


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def project_env(repo: Path, **extra: str) -> dict[str, str]:
    """Environment for running DVC in `repo`: the venv first on PATH, MLflow store inside the repo."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        DVC_NO_ANALYTICS="1",
    )
    env.update(extra)
    return env


def run(cmd: list[str], repo: Path, env: dict[str, str] | None = None, check: bool = True, timeout: int = 600):
    """Runs a command in `repo`; on failure the assertion shows its output."""
    proc = subprocess.run(cmd, cwd=repo, env=env or project_env(repo), capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc
