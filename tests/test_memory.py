"""Allocator tuning: freed activation-sized blocks are reused instead of page-faulted again."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from mgspec.train.memory import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc() and tune_malloc()  # idempotent
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(48 << 18)  # 48 MiB, above glibc's default mmap threshold
del x
before = faults()
for _ in range(5):
    x = torch.ones(48 << 18)
    del x
print(faults() - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_tuned_malloc_reuses_large_blocks():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    default, tuned = faults("default"), faults("tuned")
    pages = 5 * (48 << 20) // 4096
    assert default > 0.9 * pages, f"expected the default allocator to fault every block again ({default})"
    assert tuned <= pages // 4, f"tuned allocator still faults: {tuned} of {pages} pages"
