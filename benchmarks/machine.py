"""The one-line machine description every benchmark report starts with."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def describe() -> str:
    """CPU model, core count, torch version and the intra-op threads torch uses now."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
