"""Studies on real components: study files, the journal-file storage, worker processes, reports."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mgspec
from tests import servers, synthetic

pytest.importorskip("optuna", reason="studies need the study extra: pip install 'mgspec[study]'")

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, body: str, name: str = "study.yaml") -> Path:
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    synthetic.write_cifar(tmp_path / "data")
    path = tmp_path / name
    path.write_text(body)
    return path


GRID = """\
name: tiny
spec: tiny.yaml
dataset: cifar10
train: {epochs: EPOCHS, batch_size: 16}
seeds: 2
grid:
  channel_grid.coarsest: [2, 4]
"""


def _study(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mgspec", "study", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def _report(tmp_path: Path, out: str = "out") -> dict:
    done = _study(tmp_path, "report", out, "-f", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_grid_with_two_jobs_then_a_rerun_trains_nothing_again(tmp_path):
    _write(tmp_path, GRID.replace("EPOCHS", "1"))
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out", "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(tmp_path)
    assert [t["state"] for t in report["trials"]] == ["complete"] * 4
    assert sorted((t["params"]["channel_grid.coarsest"], t["seed"]) for t in report["trials"]) == [
        (2, 0),
        (2, 1),
        (4, 0),
        (4, 1),
    ]
    assert len(report["points"]) == 2 and all(p["seeds"] == [0, 1] for p in report["points"])
    for p in report["points"]:  # mean and sample std over the point's two seeds
        accs = [t["test_acc"] for t in report["trials"] if t["params"] == p["params"]]
        assert p["acc_mean"] == pytest.approx(statistics.fmean(accs))
        assert p["acc_std"] == pytest.approx(statistics.stdev(accs))
    for t in report["trials"]:  # every trial is an ordinary run directory, counted like `mgspec count`
        assert (Path(t["run_dir"]) / "checkpoint.pt").is_file()
        counted = mgspec.count_spec(
            tmp_path / "tiny.yaml", [f"channel_grid.coarsest={t['params']['channel_grid.coarsest']}"]
        )
        assert t["weights"] == counted.total and t["macs"] == counted.macs
    stamps = {t["run_dir"]: (Path(t["run_dir"]) / "checkpoint.pt").stat().st_mtime_ns for t in report["trials"]}
    again = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out", "--jobs", "2")
    assert again.returncode == 0, again.stderr
    assert "trial 4" not in again.stdout
    assert {d: (Path(d) / "checkpoint.pt").stat().st_mtime_ns for d in stamps} == stamps


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "jobs"),
    [(signal.SIGTERM, "1"), (signal.SIGINT, "1"), (signal.SIGINT, "2")],
    ids=["sigterm", "ctrl-c", "ctrl-c-two-jobs"],
)
def test_a_signal_mid_study_then_a_rerun_resumes_from_the_checkpoint(tmp_path, signum, jobs):
    """SIGTERM (scancel) to the process, or Ctrl-C to its whole process group as a terminal sends it."""
    _write(tmp_path, GRID.replace("EPOCHS", "3"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mgspec", "study", "run", "study.yaml", "--data-dir", "data", "--out", "out"]
    process = subprocess.Popen(
        [*command, "--jobs", jobs], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out" / "trials").glob("*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    again = (
        f"run the same command again to continue: mgspec study run study.yaml --data-dir data --out out --jobs {jobs}"
    )
    assert again in err and "Traceback" not in err, err
    states = [t["state"] for t in _report(tmp_path)["trials"]]
    interrupted = [t for t in _report(tmp_path)["trials"] if t["state"] == "interrupted"]
    assert 1 <= len(interrupted) <= int(jobs) and "running" not in states, states
    run_dir = interrupted[0]["run_dir"]
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming {run_dir} at epoch" in done.stdout
    report = _report(tmp_path)
    assert [t["state"] for t in report["trials"]] == ["complete"] * 4
    assert run_dir in {t["run_dir"] for t in report["trials"]}
    epochs = [json.loads(line)["epoch"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


@pytest.mark.slow
def test_a_worker_ignores_ctrl_c_until_its_handler_is_in_place(tmp_path):
    """A worker importing Python when Ctrl-C comes: the runner forwards it as SIGTERM, so the worker
    ignores SIGINT until it handles it (else a KeyboardInterrupt traceback from the import).
    Sent to the worker alone, it is ignored, and the study trains to its end."""
    _write(tmp_path, GRID.replace("EPOCHS", "1"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mgspec", "study", "run", "study.yaml", "--data-dir", "data", "--out", "out"]
    process = subprocess.Popen(
        [*command, "--jobs", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (children := _workers_of(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # past exec, well inside the worker's imports (torch alone takes longer)
    os.kill(children[0], signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert [t["state"] for t in _report(tmp_path)["trials"]] == ["complete"] * 4


@pytest.mark.slow
def test_a_changed_study_file_is_refused_with_what_differs(tmp_path):
    path = _write(tmp_path, GRID.replace("EPOCHS", "1").replace("[2, 4]", "[2]").replace("seeds: 2", "seeds: 1"))
    assert _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out").returncode == 0
    path.write_text(path.read_text().replace("seeds: 1", "seeds: 3"))
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 2
    assert "study.yaml:5:" in done.stderr and "seeds (1 -> 3)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_diverging_point_fails_and_the_others_finish(tmp_path):
    body = (
        GRID.replace("EPOCHS", "1")
        .replace("seeds: 2", "seeds: 1")
        .replace("channel_grid.coarsest: [2, 4]", "train.lr: [0.05, 1e6]")
    )
    _write(tmp_path, body)
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 1, done.stdout + done.stderr
    states = {t["params"]["train.lr"]: t for t in _report(tmp_path)["trials"]}
    assert states[0.05]["state"] == "complete"
    assert states[1e6]["state"] == "failed" and "diverged" in states[1e6]["reason"]
    assert "failed trials:" in done.stdout


@pytest.mark.slow
def test_a_bad_grid_value_is_located_before_any_training(tmp_path):
    _write(tmp_path, GRID.replace("EPOCHS", "1").replace("[2, 4]", "[2, 0]"))
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 2
    assert done.stderr.startswith("error: study.yaml:7:30: grid.channel_grid.coarsest[1]: channel_grid.coarsest=0")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ("seeds: 2", "seeds: 0"),
        ("dataset: cifar10", "dataset: imagenet"),
        ("train: {epochs: EPOCHS, batch_size: 16}", "train: {epoch: 1}"),
        ("seeds: 2", "sedes: 2"),
    ],
)
@pytest.mark.slow
def test_study_file_errors_name_file_and_line(tmp_path, change, where):
    _write(tmp_path, GRID.replace(change, where))
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 2, done.stderr
    line = next(i for i, text in enumerate(GRID.replace(change, where).splitlines(), 1) if where in text)
    assert done.stderr.startswith(f"error: study.yaml:{line}:"), done.stderr
    assert "Traceback" not in done.stderr


def _dominated(a: dict, b: dict) -> bool:
    """b dominates a: no less accurate on validation (what a search selects on), no more weights, better in one."""
    return (
        b["val_acc"] >= a["val_acc"]
        and b["weights"] <= a["weights"]
        and (b["val_acc"] > a["val_acc"] or b["weights"] < a["weights"])
    )


@pytest.mark.slow
def test_search_never_trains_above_max_weights_and_reports_the_pareto_front(tmp_path):
    spec = ROOT / "specs" / "mgiad_small_cifar10.yaml"
    _write(
        tmp_path,
        f"""\
name: pareto
spec: {spec}
dataset: cifar10
train: {{epochs: 1, batch_size: 40}}
search:
  trials: 4
  objectives: {{accuracy: maximize, weights: minimize}}
  max_weights: 30000
  space:
    channel_grid.coarsest: [4, 8, 16]
    channel_grid.group_size: [2, 4]
    width: {{low: 0.5, high: 2.0, step: 0.5}}
""",
    )
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out", "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(tmp_path)
    completed = [t for t in report["trials"] if t["state"] == "complete"]
    assert len(completed) == 4
    for t in report["trials"]:
        if t["weights"] is not None and t["weights"] > 30000:
            assert t["state"] == "pruned" and t["run_dir"] is None
    for t in completed:
        overrides = [f"{k}={v}" for k, v in t["params"].items()]
        assert t["weights"] == mgspec.count_spec(spec, overrides).total <= 30000
    # Trials hold out a validation split by default; the front is chosen on it, never on test accuracy.
    assert all(t["val_acc"] is not None and t["test_acc"] is not None for t in completed)
    expected = sorted(t["number"] for t in completed if not any(_dominated(t, o) for o in completed))
    assert report["pareto"] == expected
    plot = _study(tmp_path, "report", "out", "--plot", "front.png")
    assert plot.returncode == 0 and (tmp_path / "front.png").stat().st_size > 0


def test_a_missing_extra_names_it(monkeypatch):
    from mgspec.study import require

    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed
    with pytest.raises(mgspec.SpecError, match=r"submitit.*\n.*pip install 'mgspec\[study\]'"):
        require("submitit")


def test_device_auto_is_the_default_and_splits_over_gpus_only_where_there_are_some():
    import torch

    from mgspec.study.executors import _devices

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        assert _devices("auto", 2) == [f"cuda:{i % count}" for i in range(2)]
    else:  # each trial resolves auto to the CPU
        assert _devices("auto", 2) == ["auto", "auto"]
    assert _devices("cpu", 2) == ["cpu", "cpu"] and _devices("auto", 1) == ["auto"]
    done = subprocess.run(
        [sys.executable, "-m", "mgspec", "study", "run", "--help"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
    )
    assert "[default: auto]" in done.stdout


@pytest.mark.parametrize("slurm", ["not installed", "no controller"])
def test_a_slurm_that_cannot_take_a_job_is_refused_before_anything_is_written(tmp_path, slurm):
    import shutil

    if slurm == "no controller" and shutil.which("scontrol") is None:
        pytest.skip("Slurm's commands are not installed here (Debian: apt install slurm-client)")
    _write(tmp_path, GRID.replace("EPOCHS", "1"))
    conf = tmp_path / "slurm.conf"  # a controller on a port nothing listens on
    port = servers.free_port()
    conf.write_text(f"ClusterName=none\nSlurmctldHost=localhost\nSlurmctldPort={port}\n"
                    "NodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost Default=YES\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLURM_CONF": str(conf)}
    if slurm == "not installed":
        env["PATH"] = str(Path(sys.executable).parent)
    command = [sys.executable, "-m", "mgspec", "study", "run", "study.yaml", "--data-dir", "data", "--out", "out"]
    done = subprocess.run([*command, "--executor", "slurm"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stdout + done.stderr
    said = (
        "Slurm's commands (sbatch, scontrol) are not on this machine's PATH"
        if slurm == "not installed"
        else "Slurm does not answer (scontrol ping: Slurmctld(primary) at "
    )
    assert done.stderr.startswith(f"error: --executor slurm: {said}"), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_cuda_that_is_not_here_is_refused_before_anything_is_written(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is here: --device cuda is a valid option")
    _write(tmp_path, GRID.replace("EPOCHS", "1"))
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out", "--device", "cuda")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--device cuda: CUDA is not available here" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_small_space_without_enough_points_under_its_budget_is_refused_before_anything_trains(tmp_path):
    """Counted whole: the tiny spec's coarsest 2 and 4 have 2,922 and 2,994 weights (``mgspec count``)."""
    body = GRID.replace("EPOCHS", "1").replace("seeds: 2\n", "").split("grid:")[0]
    space = "  space:\n    channel_grid.coarsest: [2, 4]\n"
    _write(tmp_path, body + "search:\n  trials: 2\n  max_weights: 2950\n" + space)
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "study.yaml:6:11: search.trials: trials 2 is more than the search space's 1 valid point under " \
           "max_weights 2,950" in done.stderr  # fmt: skip
    assert "set trials to at most 1" in done.stderr and "Traceback" not in done.stderr
    _write(tmp_path, body + "search:\n  trials: 1\n  max_weights: 2900\n" + space)
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "study.yaml:7:16: search.max_weights: no point of the search space has at most 2,900 weights " \
           "(its 2 valid points have more)" in done.stderr  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_search_whose_large_space_has_no_point_under_its_budget_stops_and_says_so(tmp_path):
    """300 widths are too many to count before training: the search finds out, and stops."""
    body = GRID.replace("EPOCHS", "1").replace("seeds: 2\n", "").split("grid:")[0]
    _write(tmp_path, body + "search:\n  trials: 2\n  max_weights: 100\n  space:\n"
                            "    width: {low: 1, high: 300, step: 1}\n")  # fmt: skip
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the search stopped after 200 draws in a row were pruned: 0 of its 2 points drawn" in done.stdout
    assert "under max_weights 100" in done.stdout
    trials = _report(tmp_path)["trials"]
    assert len(trials) == 200 and {t["state"] for t in trials} == {"pruned"}


@pytest.mark.slow
def test_another_study_in_a_study_directory_is_refused(tmp_path):
    """Its trial 0 would find the first study's trials/0-seed0 finished and report it as its own."""
    path = _write(tmp_path, GRID.replace("EPOCHS", "1").replace("[2, 4]", "[2]").replace("seeds: 2", "seeds: 1"))
    assert _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out").returncode == 0
    (tmp_path / "other.yaml").write_text(path.read_text().replace("name: tiny", "name: other"))
    done = _study(tmp_path, "run", "other.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "out: this directory holds the study 'tiny'; a study directory holds one study" in done.stderr
    assert done.stderr.count("out") == 2, done.stderr  # the location, then the hint's --out
    assert "give the study 'other' another --out" in done.stderr
    assert [t["study"] for t in [_report(tmp_path)]] == ["tiny"]
    config = json.loads((tmp_path / "out" / "trials" / "0-seed0" / "config.json").read_text())
    assert config["experiment"]["study"] == "tiny"


def test_a_broken_data_file_is_refused_before_anything_is_written(tmp_path):
    """As `mgspec train` refuses it: not a failure in every trial and a study left behind."""
    _write(tmp_path, GRID.replace("EPOCHS", "1"))
    batch = tmp_path / "data" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:1000])
    done = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "test_batch: not a CIFAR python batch" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def _workers_of(tmp_path: Path) -> list[int]:
    """The process ids of the study workers running in ``tmp_path`` (from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "mgspec.study.worker" in line and str(tmp_path) in line:
            found.append(int(proc.name))
    return found


@pytest.mark.slow
def test_a_killed_worker_is_named_and_its_trial_continues_on_a_rerun(tmp_path):
    _write(tmp_path, GRID.replace("EPOCHS", "3"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mgspec", "study", "run", "study.yaml", "--data-dir", "data", "--out", "out"]
    process = subprocess.Popen(
        [*command, "--jobs", "6"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out" / "trials").glob("*/checkpoint.pt")) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = _workers_of(tmp_path)
    assert len(pids) == 4, pids  # one per trial, not --jobs 6
    os.kill(pids[0], signal.SIGKILL)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, out + err
    assert "4 trials to train: 4 workers" in out and "was killed (SIGKILL): its trial continues" in out
    states = [t["state"] for t in _report(tmp_path)["trials"]]
    assert states.count("interrupted") == 1 and "running" not in states, states
    again = _study(tmp_path, "run", "study.yaml", "--data-dir", "data", "--out", "out")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [t["state"] for t in _report(tmp_path)["trials"]] == ["complete"] * 4
