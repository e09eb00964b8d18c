"""README's quickstart: `make demo` compiles the MGiaD spec and prints its count table.

The recipe runs for real against a copy of the repository, with the virtual environment
replaced by the one running the tests (creating a fresh one is what CI's `make test` does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _fake_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    mgspec = Path(sys.executable).parent / "mgspec"
    if not mgspec.exists():
        pytest.skip("the mgspec console script is not installed next to this interpreter")
    (venv / "bin" / "mgspec").symlink_to(mgspec)
    stamp = venv / ".mgspec-installed"
    stamp.touch()
    future = time.time() + 3600
    os.utime(stamp, (future, future))  # newer than pyproject.toml: nothing to install
    return venv


def test_make_demo_compiles_and_prints_the_count_table(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "specs", repo / "specs")
    venv = _fake_venv(tmp_path)

    result = subprocess.run(
        ["make", "demo", f"VENV={venv}"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "-m venv" not in result.stdout, "the demo reinstalled although the stamp is fresh"
    assert "mgiad_cifar10 (mgiad): 393,034 weights" in result.stdout
    assert "│ total │ 393,034 │ 100.0% │ 316,928,512 │" in result.stdout
    generated = repo / "generated" / "mgiad_cifar10.py"
    assert generated.read_text() == (ROOT / "generated" / "mgiad_cifar10.py").read_text()


def test_quickstart_is_what_readme_says():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
