"""The study benchmarks run end to end in their --dry form (tiny, synthetic), so they work when measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--dry", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_step_threads_dry_reports_the_floor_from_its_three_step_times():
    result = _dry("step_threads.py")
    t2, t1, both = result["median_step_ms"].values()
    assert list(result["median_step_ms"]) == ["2 threads alone", "1 thread alone", "1 thread, two at once"]
    assert min(t2, t1, both) > 0
    assert result["jobs_ratio_floor"] == pytest.approx(both / (2 * t2))
    assert result["speedup_s"] == pytest.approx(t1 / t2)


@pytest.mark.slow
def test_study_jobs_dry_runs_both_job_counts():
    pytest.importorskip("optuna", reason="the benchmark runs studies: pip install 'mgspec[study]'")
    result = _dry("study_jobs.py", "--rounds", "1")
    assert sorted(r["jobs"] for r in result["runs"]) == [1, 2]
    assert result["median_ratio"] == pytest.approx(result["runs"][1]["wall_s"] / result["runs"][0]["wall_s"])
