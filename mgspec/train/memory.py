"""Process-level allocator tuning for CPU training.

glibc's malloc serves every block above its (dynamic, at most 32 MB) mmap threshold with a fresh
``mmap`` and returns it to the kernel on ``free``. A training step allocates and frees the same
activation-sized blocks (tens of MB at batch 128) over and over, so every step page-faults its
whole working set again: on the reference machine 1.3 million minor faults and 15-20% of the
step time for MGiaD at batch 128 (docs/performance.md). Raising the mmap and trim thresholds
keeps those blocks in malloc's heap for reuse. The cost is that memory freed by the process is
kept for reuse rather than returned to the system, which is what a training process wants.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the reusable heap (1 GiB; larger ones are still mapped).
THRESHOLD = 1 << 30


@functools.cache
def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
