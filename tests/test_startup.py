"""Start-up: the commands that only read specs never import torch.

``import torch`` is 2-3 s of every command's start; validating, counting, listing, showing,
exporting the graph and compiling source need none of it (benchmarks/startup.py measures the
time against a bare ``python -c pass``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = """
import sys
from mgspec.cli.app import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    assert not exit.code, exit.code
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""

COMMANDS = [
    ["--help"],
    ["validate", "specs/mgiad_cifar10.yaml"],
    ["count", "specs/mgiad_cifar10.yaml"],
    ["count", "specs/mgnet_cifar10.yaml", "--no-optimize", "--format", "json"],
    ["schema"],
    ["list"],
    ["show", "specs/mgic_cifar10.yaml"],
    ["graph", "specs/mgiad_cifar10.yaml", "--format", "mermaid"],
    ["paper"],
    ["paper", "--table", "II", "--format", "json"],
    ["validate", "specs/mgnet_small_cifar10.yaml", "--set", "resolution_grid.levels[0].name=fine"],
]


@pytest.mark.slow
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_spec_commands_leave_torch_out(args):
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-500:]


def test_compile_leaves_torch_out(tmp_path):
    args = ["compile", "specs/mgiad_cifar10.yaml", "specs/resnet20_cifar10.yaml", "-o", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "mgiad_cifar10.py").read_text() == (ROOT / "generated" / "mgiad_cifar10.py").read_text()


@pytest.mark.slow
def test_library_import_leaves_torch_out_until_a_model_is_built():
    code = (
        "import sys, mgspec; mgspec.count_spec('specs/mgiad_cifar10.yaml'); assert 'torch' not in sys.modules;"
        "mgspec.create_model('specs/resnet20_cifar10.yaml'); assert 'torch' in sys.modules; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "ok", proc.stderr
