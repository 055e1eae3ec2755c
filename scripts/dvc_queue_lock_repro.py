"""Reproduces DVC's lost-experiment bug under `dvc queue start -j 2` (README: "Parallel queues").

Queues two tiny experiments in a throw-away copy of this repository, then holds DVC's
experiments lock file (`.dvc/tmp/exps/rwlock.lock`) for 5 s at a time while the two
workers set up. DVC's `TempDirExecutor.init_git` retries on the LockError, but its
retry re-creates the executor's `.git` and dies with FileExistsError: one experiment
ends Failed with no `dvc queue logs`. Prints the queue status and the worker log lines
that say so; exits 1 if an experiment was lost (the bug is present), 0 if not.

    .venv/bin/python scripts/dvc_queue_lock_repro.py [--dir /tmp]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import zc.lockfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e_helpers import TINY_SET, clone_project, project_env, run, set_args  # noqa: E402

HOLD_S = 4.0  # longer than the 3 s DVC's zc.lockfile wrapper retries for


def _hog(lock_file: Path, stop: threading.Event) -> None:
    """Holds `lock_file` for HOLD_S at a time, with short gaps, until `stop` is set."""
    while not stop.is_set():
        try:
            lock = zc.lockfile.LockFile(str(lock_file))
        except zc.lockfile.LockError:
            time.sleep(0.05)
            continue
        time.sleep(HOLD_S)
        lock.close()
        time.sleep(0.1)  # a short gap: set-up gets in, then finds the lock held again


def main() -> int:
    """Runs the reproduction; returns 1 if DVC lost an experiment."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the throw-away repository goes")
    repo = clone_project(Path(tempfile.mkdtemp(prefix="dvc_lock_", dir=ap.parse_args().dir)) / "proj")
    env = project_env(repo)
    for i in range(2):
        run(["dvc", "exp", "run", "--queue", "-n", f"p{i}", *set_args([*TINY_SET, f"loss.lambda={i}"])], repo, env)
    lock_file = repo / ".dvc" / "tmp" / "exps" / "rwlock.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    threading.Thread(target=_hog, args=(lock_file, stop), daemon=True).start()
    run(["dvc", "queue", "start", "-j", "2"], repo, env)
    deadline, status = time.time() + 600, ""
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo, env, check=False).stdout
        if status and "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    stop.set()
    print(status)
    for out in sorted((repo / ".dvc" / "tmp" / "exps" / "celery").glob("*.out")):
        for line in out.read_text(errors="replace").splitlines():
            if "FileExistsError" in line or "LockError" in line:
                print(f"{out.name}: {line[:240]}")
    print(f"repository kept at {repo}")
    return 1 if "Failed" in status else 0


if __name__ == "__main__":
    sys.exit(main())
