"""Small batched LAPACK calls (6x6 solves, QR of 256x32) run on one CPU thread.

Why: MKL parallelises a batch of tiny factorisations over its OpenMP threads, and on a
shared 2-core machine a thread that is descheduled stalls the whole call: measured under
load 4-10, `linalg.solve_ex` of four 6x6 systems took 8.5 ms on 2 threads and 0.012 ms on
one; a (4, 256, 32) QR 45 ms against 0.16 ms; `eigh` of four 256x256 matrices 4.8 s
against 20 ms. The large element-wise work around them keeps its threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """Runs the block on one intra-op CPU thread (no-op off the CPU), restoring the count after."""
    if device.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
