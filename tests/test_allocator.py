"""The training process keeps freed CPU memory: blocks freed and allocated again are not faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

# A step's pattern: several blocks above glibc's 32 MB mmap ceiling allocated, written and
# freed, four times; the page faults of each round. (torch, not numpy: numpy asks for
# transparent huge pages, which fault 2 MiB at a time.)
PROBE = """
import json, resource, sys
import torch
from pipeline.training.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
sizes = [mb << 20 for mb in (48, 40, 64, 36, 80, 52)]
rounds = []
for _ in range(4):
    before = faults()
    held = [torch.ones(n, dtype=torch.uint8) for n in sizes]
    del held
    rounds.append(faults() - before)
print(json.dumps(rounds))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    def later_rounds(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, check=True)
        return sum(json.loads(out.stdout)[1:])  # the first round faults in either case

    pages = 3 * (320 << 20) // 4096  # three rounds of 320 MB in 4 KiB pages
    assert later_rounds("default") > 0.9 * pages  # mmap'd and unmapped: every page faults again, every round
    assert later_rounds("keep") < 0.2 * pages
