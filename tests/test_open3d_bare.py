"""Open3D on a bare machine: libusb-1.0 from the package index, never from the system.

The Open3D wheel links the system's libusb-1.0, which a bare Debian lacks (no apt, no
root for a user). `pipeline.trajectory.open3d_lib` loads `libusb-package`'s copy first.
The test proves it with the system's copy out of reach: where the machine has one, it is
hidden in a private mount namespace (`unshare --mount`, root only) by binding /dev/null
over every file of it; where it has none, the machine is already bare.
"""

from __future__ import annotations

import builtins
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.trajectory.open3d_lib import Open3DUnavailableError, import_open3d, open3d_unavailable

ROOT = Path(__file__).resolve().parents[1]

# One real odometry call on a rendered pair of known motion, then where libusb came from.
SCRIPT = """
import numpy as np
from pipeline.trajectory.baselines import open3d_odometry
from pipeline.camera import NYU_KINECT
from tests.test_trajectory_baselines import SIZE, _pair
(rgb_i, depth_i), (rgb_j, depth_j), T_true = _pair(0, (0.02, 0.0, 0.01), 1.0)
T, ok = open3d_odometry(rgb_i, depth_i, rgb_j, depth_j, NYU_KINECT.scaled(SIZE[1], SIZE[0]))
print("error_m", float(np.linalg.norm(T[:3, 3] - T_true[:3, 3])), "success", ok)
print("libusb", *sorted({l.split()[-1] for l in open("/proc/self/maps") if "libusb" in l}))
"""


def _system_libusb() -> list[str]:
    """The system's libusb-1.0 files (ld.so's cache and the usual folders), resolved, each once."""
    found = set()
    for folder in ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib"):
        for p in Path(folder).glob("**/libusb-1.0.so*") if Path(folder).is_dir() else ():
            found.add(str(p.resolve()))
    return sorted(found)


def _hidden(command: list[str], files: list[str]) -> list[str]:
    """`command` in a private mount namespace where each of `files` reads as /dev/null."""
    binds = " && ".join(f"mount --bind /dev/null {f}" for f in files)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{binds} && exec "$@"', "sh", *command]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the libusb preload is for Open3D's Linux wheel")
def test_open3d_imports_and_runs_odometry_with_the_systems_libusb_out_of_reach() -> None:
    system = _system_libusb()
    command = [sys.executable, "-c", SCRIPT]
    if system:
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip(f"the system has libusb ({system[0]}) and hiding it needs root and unshare(1)")
        command = _hidden(command, system)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LD_LIBRARY_PATH": "", "LD_PRELOAD": ""}
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    fields = dict(line.split(maxsplit=1) for line in out.stdout.splitlines())
    assert float(fields["error_m"].split()[0]) < 0.01, out.stdout  # a real solve, not a stub
    libusb = fields["libusb"].split()
    assert len(libusb) == 1 and "libusb_package" in libusb[0], libusb  # the wheel's copy, the only one loaded


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("libusb-1.0.so.0: cannot open shared object file: No such file or directory", "pip install -e ."),
        ("libGL.so.1: cannot open shared object file: No such file or directory", "apt-get install libgl1"),
        ("libEGL.so.1: cannot open shared object file: No such file or directory", "apt-get install libegl1"),
        ("No module named 'open3d'", "pip install -e ."),
    ],
)
def test_a_missing_library_is_one_line_naming_what_to_install(monkeypatch, error: str, expected: str) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "open3d":
            raise ImportError(error)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(Open3DUnavailableError, match=expected.replace(".", r"\.")) as err:
        import_open3d()
    assert "\n" not in str(err.value)
    assert open3d_unavailable() == str(err.value)
