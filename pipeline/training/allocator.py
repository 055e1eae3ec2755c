"""Keep freed CPU memory in the process during training, so steps stop faulting it back in.

glibc's malloc serves every block above its (dynamic, at most 32 MB) mmap threshold with a
fresh `mmap` and hands it back with `munmap` when freed. A U-Net step on the CPU
allocates and frees hundreds of MB of activations, so every step the kernel zeroes and
maps them again: at 240x320, batch 16, ~2.0 M page faults and 9.3 s of system time per
12.3 s step on this project's 2-core VM. With mmap off for malloc (`M_MMAP_MAX` 0) and
trimming off (`M_TRIM_THRESHOLD`), freed activations stay in the heap and are reused: 6.4 K
faults, 0.16 s of system time, 6.8 s a step (docs/benchmarks.md). PyTorch's own tuning
guide gets the same effect by preloading jemalloc or tcmalloc; `mallopt` needs nothing
installed. The price is that the process keeps its peak heap until it exits, which a
training process reaches every step anyway. No effect on CUDA memory, or off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
TOP_PAD = 64 << 20  # bytes requested beyond each heap growth: fewer brk calls while the heap first grows
_done = False


def keep_freed_memory() -> bool:
    """Sets glibc's malloc to keep freed memory (no mmap per block, no trim); once per process.

    Returns:
        Whether it took effect (False off Linux or off glibc, e.g. musl or macOS).
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    ok = all(mallopt(p, v) == 1 for p, v in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, TOP_PAD)))
    _done = ok
    log.info("CPU allocator: freed memory kept for reuse (glibc mallopt)" if ok else "glibc mallopt refused")
    return ok
