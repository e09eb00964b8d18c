"""benchmarks/gpu_step.py --dry: the GPU benchmark runs end to end, tiny, on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_step_dry(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_step.py"), "--dry", "--budget", "60", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads((out / "gpu_step.json").read_text())
    assert r["env"]["torch"] and "errors" not in r, r.get("errors")
    steps = [s for s in r["steps"] if "ms" in s]
    assert {s["kernels_flag"] for s in steps} == {False, True}
    assert {s["dtype"] for s in steps} == {"bf16", "fp32"}
    assert all(s["ms"] > 0 and s["floor_ms"] > 0 and s["model_kernels"] > 0 for s in steps)
    assert r["convs"] and all(c["fwd_us"] > 0 and c["wgrad_us"] > 0 for c in r["convs"])
    table = (out / "gpu_step.md").read_text()
    assert "| MGiaD small | 4 | bf16 | eager |" in table and "wgrad us" in table
