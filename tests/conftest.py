from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
SHARED_DATA = ROOT.parent / "shared" / "data"


def spec_id(path: Path) -> str:
    return path.stem


@pytest.fixture(autouse=True)
def _deterministic(monkeypatch):
    torch.manual_seed(0)
    # Under pytest-xdist every worker is a process of its own: one thread each keeps the machine
    # from being oversubscribed (spinning OpenMP threads slow contended runs down many times over).
    threads = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
    torch.set_num_threads(threads)
    # `train`, `evaluate` and `sweep` default --threads to $OMP_NUM_THREADS (else every core).
    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    yield
