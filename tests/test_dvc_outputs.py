"""Every DVC output is in DVC's cache and git-ignored by a .gitignore committed in the repository.

An output that git sees lands in a user's `git add -A`, and a `cache: false` one lands in
every `dvc exp run`'s commit (an experiment's commit must hold dvc.lock and params only).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _outputs() -> list[tuple[str, str, dict]]:
    """(stage, path, options) of every `outs`/`metrics`/`plots` entry of dvc.yaml, `${paths.*}` resolved."""
    paths = yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = []
    for name, stage in stages.items():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, options = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
                if path.startswith("${paths."):
                    path = paths[path[len("${paths.") : -1]]
                found.append((name, path, options or {}))
    return found


def test_every_output_is_cached_by_dvc() -> None:
    uncached = [(stage, path) for stage, path, options in _outputs() if options.get("cache") is False]
    assert not uncached, f"cache: false puts these in every experiment's git commit: {uncached}"


def test_every_output_is_git_ignored_by_committed_files() -> None:
    outputs = [path for _, path, _ in _outputs()]
    assert len(outputs) >= 20
    check = subprocess.run(["git", "check-ignore", "--no-index", "-v", *outputs], cwd=ROOT, capture_output=True,
                           text=True)  # fmt: skip
    ignored = {line.split("\t")[1] for line in check.stdout.splitlines()}
    assert set(outputs) == ignored, f"not git-ignored: {sorted(set(outputs) - ignored)}"
    sources = {line.split(":")[0] for line in check.stdout.splitlines()}
    tracked = set(
        subprocess.run(["git", "ls-files", *sources], cwd=ROOT, capture_output=True, text=True).stdout.split()
    )
    assert sources <= tracked, f"ignored by files not in git: {sorted(sources - tracked)}"
