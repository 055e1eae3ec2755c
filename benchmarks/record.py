"""Results files: a benchmark's JSON line with where, when and on what code it was measured.

Every benchmark takes `--record [PATH]`; with it, the JSON object or list it prints as its
last line is also written to PATH (default `benchmarks/results/<benchmark>.json`) as

    {"benchmark": ..., "result": <the JSON line>, "provenance": {...}}

where provenance holds the commit (and whether tracked files differed from it), the date,
the machine (CPU model and cores, memory, GPU or "none"), the 1-minute load average when
the measurement started (the machines are shared: a loaded figure says so), the Python
and torch versions and the exact command. `scripts/docs_tables.py` turns these files into
the tables of the docs and the README. Standard library only (torch when importable):
`gpu_check.py` runs where neither DVC nor MLflow is installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def add_record_flag(ap: argparse.ArgumentParser, benchmark: str) -> None:
    """Adds `--record [PATH]` to a benchmark's parser (PATH defaults to results/<benchmark>.json)."""
    ap.add_argument(
        "--record",
        nargs="?",
        const=str(RESULTS.relative_to(REPO) / f"{benchmark}.json"),
        metavar="PATH",
        help=f"also write the result with its provenance to PATH (default benchmarks/results/{benchmark}.json)",
    )


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpu() -> str:
    try:
        import torch
    except ImportError:
        return "none"
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return "none"


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)


def _command() -> str:
    """The command line as typed: the interpreter (relative to the repository when inside it) and its args."""
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    exe = Path(argv[0])
    if exe.is_absolute() and exe.is_relative_to(REPO):
        argv[0] = str(exe.relative_to(REPO))
    return shlex.join(argv)


def provenance(command: str | None = None, load_avg_1m: float | None = None) -> dict[str, Any]:
    """Where, when and on what code a figure is measured (call it when the measurement starts)."""
    commit = _git("rev-parse", "HEAD")
    return {
        "commit": commit or None,
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "memory_gib": _memory_gib(),
            "gpu": _gpu(),
        },
        "load_avg_1m": round(os.getloadavg()[0] if load_avg_1m is None else load_avg_1m, 2),
        "python": platform.python_version(),
        "torch": _torch_version(),
        "command": command or _command(),
    }


@dataclass
class Recording:
    """One measurement: provenance taken at the start, the result printed (and written) at the end."""

    benchmark: str
    path: Path | None
    started: dict[str, Any]

    @classmethod
    def begin(
        cls, benchmark: str, path: str | Path | None, command: str | None = None, load_avg_1m: float | None = None
    ) -> Recording:
        """Starts a measurement; `path` None means print only (no `--record`)."""
        target = None if path is None else (Path(path) if Path(path).is_absolute() else REPO / path)
        return cls(benchmark, target, provenance(command, load_avg_1m))

    def finish(self, result: Any) -> None:
        """Prints the JSON line (always the last line) and, when recording, writes the results file."""
        if self.path is not None:
            write_results(self.path, self.benchmark, result, self.started)
            print(f"recorded in {self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path}")
        print(json.dumps(result, default=float))


def write_results(path: Path, benchmark: str, result: Any, prov: dict[str, Any]) -> None:
    """Writes a results file atomically (a half-written file would break the docs build)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    doc = {"benchmark": benchmark, "result": result, "provenance": prov}
    tmp.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def read_results(path: Path) -> dict[str, Any]:
    """A results file, checked for its three keys."""
    doc = json.loads(path.read_text())
    missing = [k for k in ("benchmark", "result", "provenance") if k not in doc]
    if missing:
        raise ValueError(f"{path}: not a results file (missing {', '.join(missing)}); re-record it with --record")
    return doc
