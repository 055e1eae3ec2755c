"""The test suite's wall-clock time and counts (run on demand; not a test).

    .venv/bin/python benchmarks/suite_time.py --record          # `make test`, as CI runs it
    .venv/bin/python benchmarks/suite_time.py --cmd ".ci/run"   # the whole CI script, install and lint included

Runs the command (its output passes through), times it, and reads pytest's closing
summary lines (`556 passed, 4 skipped in 317.2s`): one per pytest run, so `make test`'s
two runs (the parallel set, then the `serial` tests) are both counted. The last line
printed is a JSON object: cmd, returncode, seconds, and per pytest run its counts and
seconds.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from benchmarks.record import REPO, Recording, add_record_flag  # noqa: E402

SUMMARY = re.compile(r"^=+ (?P<counts>(?:\d+ \w+(?:, )?)+) in (?P<seconds>[\d.]+)s")


def pytest_runs(output: str) -> list[dict[str, float]]:
    """Every pytest summary line of `output` as {outcome: count, ..., "seconds": s}."""
    runs = []
    for line in output.splitlines():
        m = SUMMARY.match(line.strip())
        if m:
            run: dict[str, float] = {w: int(n) for n, w in (c.split() for c in m["counts"].split(", "))}
            run["seconds"] = float(m["seconds"])
            runs.append(run)
    return runs


def main() -> int:
    """Runs and times the command, prints (and records) the JSON line; exits with its status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cmd", default="make test", help="the command to time (default: make test)")
    add_record_flag(ap, "suite_time")
    a = ap.parse_args()
    rec = Recording.begin("suite_time", a.record)
    start = time.perf_counter()
    proc = subprocess.Popen(a.cmd, shell=True, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout or []:
        sys.stdout.write(line)
        lines.append(line)
    proc.wait()
    seconds = time.perf_counter() - start
    rec.finish(
        {
            "cmd": a.cmd,
            "returncode": proc.returncode,
            "seconds": round(seconds, 1),
            "pytest_runs": pytest_runs("".join(lines)),
        }
    )
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
