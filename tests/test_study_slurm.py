"""Studies on a real single-node Slurm started by the test: a cancelled job, then a re-run that resumes it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import servers, synthetic

pytest.importorskip("optuna", reason="studies need the study extra: pip install 'mgspec[study]'")
pytest.importorskip("submitit", reason="the Slurm executor needs the study extra: pip install 'mgspec[study]'")

ROOT = Path(__file__).resolve().parents[1]
MISSING = servers.slurm_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

EPOCHS = 15
STUDY = f"""\
name: on-slurm
spec: tiny.yaml
dataset: cifar10
train: {{epochs: {EPOCHS}, batch_size: 16}}
seeds: 1
grid:
  channel_grid.coarsest: [2, 4]
"""


@pytest.fixture(scope="module")
def cluster():
    with servers.slurm() as env:
        yield {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mgspec", "study", *args]


def _report(tmp_path: Path, env: dict) -> dict:
    done = subprocess.run(
        _command("report", "out", "-f", "json"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _run_until_a_checkpoint(tmp_path: Path, cluster: dict) -> tuple[list[str], subprocess.Popen, list[str]]:
    """Start the study on Slurm; once a trial wrote its checkpoint, the command, its process and
    the Slurm jobs running."""
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    synthetic.write_cifar(tmp_path / "data")
    (tmp_path / "study.yaml").write_text(STUDY)
    run = _command("run", "study.yaml", "--executor", "slurm", "--jobs", "1", "--data-dir", "data", "--out", "out")
    first = subprocess.Popen(run, cwd=tmp_path, env=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "out" / "trials").glob("*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    jobs = subprocess.run(["squeue", "-h", "-o", "%i"], env=cluster, capture_output=True, text=True, timeout=30)
    assert jobs.stdout.split(), "no Slurm job is running"
    return run, first, jobs.stdout.split()


@pytest.mark.slow
def test_a_cancelled_slurm_job_is_resumed_by_a_rerun(tmp_path, cluster):
    run, first, jobs = _run_until_a_checkpoint(tmp_path, cluster)
    subprocess.run(["scancel", *jobs], env=cluster, check=True, timeout=30)
    out, err = first.communicate(timeout=180)
    assert first.returncode == 1, out + err
    assert "did not finish" in out and "Traceback" not in err
    unfinished = [t for t in _report(tmp_path, cluster)["trials"] if t["state"] in ("interrupted", "running")]
    assert len(unfinished) == 1
    run_dir = Path(unfinished[0]["run_dir"])
    trained = len((run_dir / "metrics.jsonl").read_text().splitlines())
    assert 1 <= trained < EPOCHS

    again = subprocess.run(run, cwd=tmp_path, env=cluster, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    report = _report(tmp_path, cluster)
    assert [t["state"] for t in report["trials"]] == ["complete"] * 2
    assert sorted(t["params"]["channel_grid.coarsest"] for t in report["trials"]) == [2, 4]
    assert str(run_dir) in {t["run_dir"] for t in report["trials"]}
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))
    logs = "".join(p.read_text() for p in (tmp_path / "out" / "slurm").rglob("*.out"))
    assert f"resuming {run_dir} at epoch {trained + 1}" in logs


@pytest.mark.slow
def test_a_job_slurm_cannot_answer_for_is_unknown_not_dead(tmp_path, cluster, monkeypatch):
    """Only Slurm saying a job is gone makes it gone: a controller out of reach is no answer."""
    from mgspec.study import claims

    job = subprocess.run(
        ["sbatch", "--parsable", "--wrap", "sleep 60", "-o", str(tmp_path / "%j.out")],
        env=cluster, capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    monkeypatch.setattr(claims, "SLURM_ANSWER_S", 0.0)  # every question asks Slurm
    assert claims.slurm_job_alive(job) is True
    subprocess.run(["scancel", job], env=cluster, check=True, timeout=30)
    deadline = time.monotonic() + 60
    while claims.slurm_job_alive(job) is not False and time.monotonic() < deadline:
        time.sleep(0.5)
    assert claims.slurm_job_alive(job) is False
    assert claims.slurm_job_alive("999999") is False  # never there: Slurm says so

    unreachable = tmp_path / "slurm.conf"
    text = Path(cluster["SLURM_CONF"]).read_text()
    port = next(line for line in text.splitlines() if line.startswith("SlurmctldPort="))
    unreachable.write_text(text.replace(port, f"SlurmctldPort={servers.free_port()}") + "MessageTimeout=2\n")
    monkeypatch.setenv("SLURM_CONF", str(unreachable))
    assert claims.slurm_job_alive(job) is None


@pytest.mark.slow
def test_a_job_warned_of_its_end_is_requeued_and_continues_its_trial(tmp_path, cluster):
    """Slurm's warning before a time limit or a preemption (submitit's SIGUSR2): the worker
    leaves its trial interrupted, submitit requeues the task, and the requeued task continues
    the trial from its checkpoint; the same ``study run`` ends with every trial complete."""
    _, first, jobs = _run_until_a_checkpoint(tmp_path, cluster)
    subprocess.run(["scancel", "--signal=USR2", *jobs], env=cluster, check=True, timeout=30)
    out, err = first.communicate(timeout=400)
    assert first.returncode == 0, out + err
    report = _report(tmp_path, cluster)
    assert [t["state"] for t in report["trials"]] == ["complete"] * 2
    logs = "".join(p.read_text() for p in (tmp_path / "out" / "slurm").rglob("*.out"))
    assert "was interrupted: it continues from" in logs and "resuming" in logs
    for trial in report["trials"]:  # every epoch trained once: the continued trial resumed, not restarted
        metrics = (Path(trial["run_dir"]) / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in metrics] == list(range(1, EPOCHS + 1))


def test_a_job_array_sbatch_refuses_is_one_located_error(tmp_path, cluster):
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    synthetic.write_cifar(tmp_path / "data")
    (tmp_path / "study.yaml").write_text(STUDY)
    run = _command("run", "study.yaml", "--executor", "slurm", "--data-dir", "data", "--out", "out",
                   "--slurm-partition", "nowhere")  # fmt: skip
    done = subprocess.run(run, cwd=tmp_path, env=cluster, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: --executor slurm: sbatch refused the job array:" in done.stderr, done.stderr
    assert "invalid partition" in done.stderr.lower() and "Traceback" not in done.stderr
