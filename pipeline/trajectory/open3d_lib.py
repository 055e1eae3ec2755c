"""Open3D, importable with nothing but pip.

Open3D's Linux wheel links a few system libraries by name. On a bare Debian/Ubuntu the
one missing is libusb-1.0 (its RealSense/Azure Kinect readers use it; the odometry never
does). The project depends on `libusb-package`, a wheel that ships libusb-1.0 built for
manylinux, and loads that copy before `import open3d`: the dynamic linker then finds a
library of soname `libusb-1.0.so.0` already in the process and never searches the system
for it (glibc matches a DT_NEEDED name against the sonames of loaded objects). So
`pip install -e .` is the whole set-up, with or without the system's package.

The other libraries it links (libGL, libEGL, libX11, libudev, libidn2) are on any Debian
or Ubuntu with a desktop stack or Mesa; where one is missing, `open3d_unavailable` says
which and what to install, and the pose stage scores every other method without the
baseline (docs/odometry-protocol.md: The baselines).
"""

from __future__ import annotations

import ctypes
import re
import sys
from functools import cache
from types import ModuleType

from pipeline.errors import PipelineError

# The Debian/Ubuntu package of each system library Open3D 0.20's Linux wheel links
# (`readelf -d libOpen3D.so.0.20`), for the message when one is missing.
DEBIAN_PACKAGES = {
    "libusb-1.0.so.0": "libusb-1.0-0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libX11.so.6": "libx11-6",
    "libudev.so.1": "libudev1",
    "libidn2.so.0": "libidn2-0",
}
ENABLE_HINT = "the pose stage scores every other method without it"


class Open3DUnavailableError(PipelineError):
    """Open3D cannot be imported here; the message is one line saying why and what to do."""


@cache
def preload_libusb() -> str | None:
    """Loads `libusb-package`'s libusb-1.0 into the process (once); returns its path, None where there is none.

    Open3D's wheel then links this copy instead of looking for the system's. Only Linux
    needs it (macOS and Windows wheels carry their own dependencies).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import libusb_package
    except ImportError:  # not installed: the system's copy, if any, is used
        return None
    path = libusb_package.get_library_path()
    if path is None:
        return None
    ctypes.CDLL(str(path))  # kept loaded for the life of the process (the handle is never closed)
    return str(path)


def _reason(e: BaseException) -> str:
    """One line: what is missing and how to get it."""
    text = " ".join(str(e).split())
    missing = re.search(r"(lib[\w.+-]+\.so[\d.]*): cannot open shared object file", text)
    if missing:
        lib = missing.group(1)
        if lib == "libusb-1.0.so.0":
            fix = "reinstall the project (pip install -e .): its libusb-package wheel provides it"
        else:
            fix = f"install the system's {lib} (Debian/Ubuntu: apt-get install {DEBIAN_PACKAGES.get(lib, lib)})"
        return f"Open3D cannot load {lib}; {fix}"
    return f"Open3D is not importable ({text}); install the project: pip install -e ."


def import_open3d() -> ModuleType:
    """Open3D, with libusb-1.0 from the package index.

    Raises:
        Open3DUnavailableError: it cannot be imported; the message names the missing library
            and what to install.
    """
    preload_libusb()
    try:
        import open3d
    except (ImportError, OSError) as e:  # a missing shared library surfaces as either
        raise Open3DUnavailableError(_reason(e)) from e
    return open3d


def open3d_unavailable() -> str | None:
    """None when Open3D imports; else the one-line reason (for the pose stage's metrics, report and log)."""
    try:
        import_open3d()
    except Open3DUnavailableError as e:
        return str(e)
    return None
