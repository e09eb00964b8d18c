from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
#: The real datasets (a CIFAR-10 subset, the MNIST test set): $MGSPEC_TEST_DATA, else ../shared/data.
SHARED_DATA = Path(os.environ.get("MGSPEC_TEST_DATA") or ROOT.parent / "shared" / "data")
_ABSENT = "set MGSPEC_TEST_DATA to a folder holding {}/ (default ../shared/data) to run it"
#: Skip markers for tests on the real data, saying which variable to set.
needs_cifar = pytest.mark.skipif(
    not (SHARED_DATA / "cifar-10-batches-py").is_dir(),
    reason=f"{SHARED_DATA / 'cifar-10-batches-py'} is absent: " + _ABSENT.format("cifar-10-batches-py"),
)
needs_mnist = pytest.mark.skipif(
    not (SHARED_DATA / "mnist").is_dir(), reason=f"{SHARED_DATA / 'mnist'} is absent: " + _ABSENT.format("mnist")
)


def spec_id(path: Path) -> str:
    return path.stem


@pytest.fixture
def tiny(tmp_path):
    """The tiny test spec and a synthetic CIFAR-10 of 80 training and 24 test images."""
    from tests.synthetic import TINY_SPEC, write_cifar

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    write_cifar(tmp_path / "data", train_per_batch=16, test=24)
    return spec, tmp_path / "data"


@pytest.fixture
def tiny_dir(tiny) -> Path:
    """The folder holding the tiny fixture's ``tiny.yaml`` and ``data/``: where commands on it run."""
    return tiny[0].parent


def run_mgspec(cwd: Path, *args, timeout: int = 400) -> subprocess.CompletedProcess:
    """``python -m mgspec ARGS`` in ``cwd`` (this checkout, one thread, a wide table), output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "mgspec", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


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
