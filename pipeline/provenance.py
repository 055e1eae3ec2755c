"""Which code made a run: the one answer the MLflow tags and the report both give."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CodeVersion:
    """A git commit, and whether tracked files differed from it."""

    commit: str | None  # None outside a git checkout (e.g. an exported copy)
    dirty: bool

    def __str__(self) -> str:
        if self.commit is None:
            return "unknown"
        return f"{self.commit} (with uncommitted changes)" if self.dirty else self.commit


def code_version(root: Path) -> CodeVersion:
    """The commit a run's code comes from, and whether tracked files differ from it.

    Under `dvc exp run` the commit is DVC's experiment baseline (`DVC_EXP_BASELINE_REV`):
    a queued experiment runs in a temporary copy whose own HEAD means nothing to the
    user; the experiment's changed params then show as uncommitted changes.
    """
    baseline = os.environ.get("DVC_EXP_BASELINE_REV", "").strip()
    try:
        commit = baseline or _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return CodeVersion(commit=baseline or None, dirty=False)
    return CodeVersion(commit=commit or None, dirty=dirty)


def _git(root: Path, *args: str) -> str:
    # A timeout because a stage must never hang on a locked or network-mounted repo.
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip()
