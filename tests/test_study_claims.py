"""Which worker trains which trial: the study lock, search draws racing, a stopped creation or
take-over finished by the next process, signals before training, heartbeats, stale owners.

Storages are real (Optuna's journal file); where a race needs a window to be seen, the window is
widened (a slow check), never simulated. Trainings are replaced by an immediate result where the
test is about claiming trials, not training them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mgspec.study import claims, draws, load_study, locks, points
from mgspec.study import storage as stores
from mgspec.study import worker as workers
from tests import synthetic

optuna = pytest.importorskip("optuna", reason="studies need the study extra: pip install 'mgspec[study]'")


def _study_file(tmp_path: Path, body: str) -> Path:
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    synthetic.write_cifar(tmp_path / "data", train_per_batch=16, test=24)
    path = tmp_path / "study.yaml"
    path.write_text("name: c\nspec: tiny.yaml\ndataset: cifar10\ntrain: {epochs: 1}\n" + body)
    return path


def _job(tmp_path: Path, path: Path, worker: int = 0) -> workers.Job:
    return workers.Job(str(path), str(tmp_path / "out"), data_dir=str(tmp_path / "data"), device="cpu", worker=worker)


def _trained_at_once(study, handle, trial, params, seed, job, log, stop=None):
    """A training that ends at once (these tests are about who trains what, not how)."""
    trial.set_user_attr("run_dir", f"trials/{trial.number}-seed{seed}")
    handle.tell(trial, [0.5] * len(study.objectives))
    return "complete"


def _trials(tmp_path: Path, name: str = "c") -> list:
    storage = stores.open_storage(None, tmp_path / "out")
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_the_journal_lock_is_held_by_one_holder_at_a_time(tmp_path):
    storage = stores.open_storage(None, tmp_path)
    inside, order = threading.Event(), []

    def second():
        inside.wait()
        with locks.locked(storage, tmp_path, "s"):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with locks.locked(storage, tmp_path, "s"):
        inside.set()
        time.sleep(0.5)  # the other holder waits all this time
        order.append("first")
    thread.join(timeout=30)
    assert order == ["first", "second"]


@pytest.mark.parametrize(("space", "trials"), [("[2]", 1), ("[2, 4]", 2)])
def test_workers_drawing_at_once_train_each_search_point_once(tmp_path, monkeypatch, space, trials):
    """Two workers draw while each check is slow: without the lock both took the same point (or
    the search trained more than ``trials``), each seeing no claim of it yet."""
    path = _study_file(
        tmp_path,
        f"search:\n  trials: {trials}\n  sampler: random\n  space:\n    channel_grid.coarsest: {space}\n",
    )
    real_check = points.check

    def slow_check(*args, **kwargs):
        time.sleep(0.4)
        return real_check(*args, **kwargs)

    monkeypatch.setattr(points, "check", slow_check)
    monkeypatch.setattr(workers, "_train", _trained_at_once)
    results = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(workers.work(_job(tmp_path, path, i), log=lambda m: None)))
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done = [t for t in _trials(tmp_path) if t.state.name == "COMPLETE"]
    assert len(done) == trials == sum(r["complete"] for r in results)
    assert len({t.user_attrs["point"] for t in done}) == trials, "a point was trained twice"


def test_a_study_whose_creator_stopped_part_way_gets_the_rest_of_its_grid(tmp_path):
    path = _study_file(tmp_path, "seeds: 2\ngrid: {width: [1, 2]}\n")
    study = load_study(path)
    storage = stores.open_storage(None, tmp_path / "out")
    # What a creator leaves when it is killed after queueing one trial of four.
    handle = optuna.create_study(study_name="c", storage=storage, directions=["maximize"])
    handle.set_user_attr(stores.DEFINITION, study.definition())
    handle.enqueue_trial({"width": 1}, user_attrs={"seed": 0, "point": points.key({"width": 1})})

    handle = stores.open_study(study, storage, tmp_path / "out")
    queued = sorted((t.user_attrs["point"], t.user_attrs["seed"]) for t in handle.get_trials())
    assert queued == [(points.key({"width": w}), s) for w in (1, 2) for s in (0, 1)]
    assert handle.user_attrs[stores.READY] is True
    again = stores.open_study(study, storage, tmp_path / "out")
    assert len(again.get_trials()) == 4, "a finished creation queues nothing more"


def test_a_changed_study_is_not_completed_with_its_own_grid(tmp_path):
    path = _study_file(tmp_path, "grid: {width: [1, 2]}\n")
    storage = stores.open_storage(None, tmp_path / "out")
    handle = optuna.create_study(study_name="c", storage=storage, directions=["maximize"])
    handle.set_user_attr(stores.DEFINITION, {**load_study(path).definition(), "seeds": 3})
    with pytest.raises(Exception, match=r"seeds \(3 -> 1\)"):
        stores.open_study(load_study(path), storage, tmp_path / "out")
    assert handle.get_trials() == []


def _signalled_while(real, signum=signal.SIGTERM):
    """``real``, during which this process gets ``signum`` (as from ``kill`` or Ctrl-C)."""

    def step(*args, **kwargs):
        os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    return step


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_training_leaves_the_trial_to_the_next_run(tmp_path, monkeypatch, signum):
    """A signal while the trial is checked (before its run directory exists) does not cut the
    check short: the trial is claimed, then left interrupted with its owner; the next worker
    continues it, and nothing waits for it."""
    path = _study_file(tmp_path, "grid: {width: [1, 2]}\n")
    monkeypatch.setattr(workers, "_train", workers._train)  # the real one, for the first worker
    with monkeypatch.context() as patch:
        patch.setattr(points, "check", _signalled_while(points.check, signum))
        with pytest.raises(workers.Interrupted):
            workers.work(_job(tmp_path, path), log=lambda m: None)
    (first,) = _trials(tmp_path)[:1]
    assert first.state.name == "RUNNING" and first.user_attrs["interrupted"] is True
    assert first.user_attrs["owner"]["pid"] == os.getpid() and first.user_attrs["seed"] == 0
    assert "weights" in first.user_attrs, "the check ran to its end"
    assert not (tmp_path / "out" / "trials").exists(), "nothing trained"
    assert claims.stale(first)

    monkeypatch.setattr(workers, "_train", _trained_at_once)
    assert workers.work(_job(tmp_path, path), log=lambda m: None)["complete"] == 2
    trials = _trials(tmp_path)
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    continuation = next(t for t in trials if t.user_attrs.get("retry_of") == first.number)
    assert continuation.state.name == "COMPLETE" and continuation.user_attrs["seed"] == 0


def test_a_search_draw_signalled_before_its_claim_is_claimed_then_left_to_the_next_run(tmp_path, monkeypatch):
    """A signal in the middle of a search draw lets the draw finish: the point is claimed with
    its seed and all its other seeds queued, then the worker stops; nothing is half-drawn."""
    path = _study_file(tmp_path, "seeds: 2\nsearch:\n  trials: 1\n  space:\n    width: [1, 2]\n")
    monkeypatch.setattr(points, "check", _signalled_while(points.check))
    with pytest.raises(workers.Interrupted):
        workers.work(_job(tmp_path, path), log=lambda m: None)
    drawn, queued = _trials(tmp_path)
    assert drawn.state.name == "RUNNING" and drawn.user_attrs["interrupted"] is True
    assert drawn.user_attrs["seed"] == 0 and drawn.user_attrs["owner"]["pid"] == os.getpid()
    assert queued.state.name == "WAITING" and queued.user_attrs["seed"] == 1
    assert queued.user_attrs["point"] == drawn.user_attrs["point"] == points.key(drawn.params)


def test_a_search_point_whose_drawer_was_killed_gets_its_other_seeds(tmp_path, monkeypatch):
    """A worker killed (kill -9) after claiming a point's first seed and before queueing the
    others: the next worker queues them, so every point trains all its seeds."""
    path = _study_file(tmp_path, "seeds: 3\nsearch:\n  trials: 1\n  space:\n    width: [1, 2]\n")
    study = load_study(path)
    storage = stores.open_storage(None, tmp_path / "out")
    handle = stores.open_study(study, storage, tmp_path / "out")
    trial = handle.ask()  # as the killed worker left it: the first seed claimed, seed 1 queued, seed 2 not
    params = {"width": trial.suggest_categorical("width", [1, 2])}
    trial.set_user_attr("point", points.key(params))
    trial.set_user_attr("seed", 0)
    trial.set_user_attr("owner", {**claims.owner(), "started": "a process that is gone"})
    handle.enqueue_trial(params, user_attrs={"seed": 1, "point": points.key(params)})
    monkeypatch.setattr(workers, "_train", _trained_at_once)

    result = workers.work(_job(tmp_path, path), log=lambda m: None)
    assert result["complete"] == 3, result  # the claimed one (continued), seed 1, and seed 2
    trials = _trials(tmp_path)
    seeds = sorted(t.user_attrs["seed"] for t in trials if t.state.name == "COMPLETE")
    assert seeds == [0, 1, 2]
    assert {t.params["width"] for t in trials} == {params["width"]}
    assert draws.complete_seeds(study, optuna.load_study(study_name="c", storage=storage)) == 0


def test_the_heartbeat_goes_on_after_a_storage_error_and_ends_with_its_trial(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    handle = optuna.create_study(storage=stores.open_storage(None, tmp_path), directions=["maximize"])
    trial = handle.ask()
    real = handle._storage
    failures = []

    class Flaky:  # the real storage, away for the first beat
        def set_trial_user_attr(self, *args):
            if not failures:
                failures.append(1)
                raise OSError("the database restarted")
            return real.set_trial_user_attr(*args)

    beating = type("Handle", (), {"_storage": Flaky()})()
    beat = workers._Heartbeat(beating, trial)
    deadline = time.monotonic() + 10
    while "heartbeat" not in handle.trials[0].user_attrs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failures and "heartbeat" in handle.trials[0].user_attrs
    handle.tell(trial, 0.5)  # taken over or finished elsewhere: the thread ends by itself
    beat.thread.join(timeout=5)
    assert not beat.thread.is_alive()
    beat.stop()


def _running(owner: dict, heartbeat: float):
    return optuna.trial.FrozenTrial(
        number=0, state=optuna.trial.TrialState.RUNNING, value=None, datetime_start=None, datetime_complete=None,
        params={}, distributions={}, user_attrs={"owner": owner, "heartbeat": heartbeat, "seed": 0},
        system_attrs={}, intermediate_values={}, trial_id=0,
    )  # fmt: skip


def test_a_trial_on_this_host_is_stale_when_its_process_is_gone_whatever_slurm_says(tmp_path):
    """Inside a Slurm allocation (a local run there), the process decides, not the job."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    owner = {"host": socket.gethostname(), "slurm_job": "4242", "slurm_restart": "0"}
    dead = {**owner, "pid": gone.pid, "started": "1"}
    alive = {**owner, "pid": os.getpid(), "started": claims._start_time(os.getpid())}
    assert claims.stale(_running(dead, time.time()))
    assert not claims.stale(_running(alive, time.time()))
    assert claims.stale(_running({"host": "elsewhere", "pid": 1}, time.time() - claims.GRACE_S - 1))
    assert not claims.stale(_running({"host": "elsewhere", "pid": 1}, time.time()))


def test_a_trial_of_another_container_with_this_host_name_is_judged_by_its_heartbeat(tmp_path):
    """Containers sharing a host name (``--network host``) do not see each other's processes: a
    process id this one cannot see is no sign that the other container's worker is gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead_here = {**claims.owner(), "pid": gone.pid, "started": "1"}
    assert dead_here["pid_ns"] and claims.stale(_running(dead_here, time.time()))
    other_container = {**dead_here, "pid_ns": "pid:[1]"}
    assert not claims.stale(_running(other_container, time.time()))
    assert claims.stale(_running(other_container, time.time() - claims.GRACE_S - 1))
    recorded_before = {k: v for k, v in dead_here.items() if k != "pid_ns"}  # owners of earlier versions
    assert claims.stale(_running(recorded_before, time.time()))


def test_a_continuation_from_another_machines_out_trains_under_its_own(tmp_path):
    job = workers.Job("s.yaml", str(tmp_path / "mine"), storage="postgresql://db/x")
    handle = optuna.create_study()
    trial = handle.ask()
    trial.set_user_attr("run_dir", "/nowhere/theirs/trials/3-seed0")
    assert workers._run_dir(trial, 0, job) == (
        tmp_path / "mine" / "trials/0-seed0",
        str(tmp_path / "mine/trials/0-seed0"),
    )
    (tmp_path / "shared" / "trials" / "3-seed0").mkdir(parents=True)
    here = str(tmp_path / "shared" / "trials" / "3-seed0")
    trial.set_user_attr("run_dir", here)
    assert workers._run_dir(trial, 0, job) == (Path(here), here)


def test_a_range_written_with_floats_is_a_float_range(tmp_path):
    floats = load_study(_study_file(tmp_path, "search:\n  trials: 1\n  space:\n    width: {low: 1.0, high: 2.0}\n"))
    ints = load_study(_study_file(tmp_path, "search:\n  trials: 1\n  space:\n    width: {low: 1, high: 2}\n"))
    assert not floats.model.search.space["width"].integer and ints.model.search.space["width"].integer
    drawn = [draws.suggest(floats, optuna.create_study().ask())["width"] for _ in range(20)]
    assert all(isinstance(w, float) and 1.0 <= w <= 2.0 for w in drawn) and len(set(drawn)) > 2
    assert {draws.suggest(ints, optuna.create_study().ask())["width"] for _ in range(20)} <= {1, 2}


def test_tensorboard_events_hold_every_metric_of_every_epoch_once(tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra: pip install 'mgspec[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mgspec.study.tensorboard import write_events

    epochs = [
        {"epoch": 1, "lr": 0.05, "train_loss": 2.3, "train_acc": 0.1, "val_loss": 2.2, "val_acc": 0.25,
         "test_loss": 2.1, "test_acc": 0.2, "images_per_s": 10.0, "elapsed_s": 1.0},
        {"epoch": 2, "lr": 0.01, "train_loss": 1.9, "train_acc": 0.3, "val_loss": 1.8, "val_acc": 0.375,
         "test_loss": 1.7, "test_acc": 0.4, "images_per_s": 12.0, "elapsed_s": 2.0},
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    write_events(tmp_path)
    write_events(tmp_path)  # again (a trial recorded twice): the same events, not twice
    assert len(list((tmp_path / "tensorboard").iterdir())) == 1
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {k for k in epochs[0] if k not in ("epoch", "elapsed_s")}
    for tag in ("val_acc", "test_acc", "lr"):
        assert [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)] == [
            (1, epochs[0][tag]),
            (2, epochs[1][tag]),
        ]


@pytest.mark.parametrize("damage", ["cut short", "garbage appended", "a line changed"])
def test_a_damaged_journal_is_refused_at_its_line_and_left_as_it_was(tmp_path, damage):
    """Optuna skips a last line cut short, but an entry appended after it makes the whole journal
    unreadable: a run must not append, and a report must not show a study with its end missing."""
    from tests.conftest import run_mgspec

    path = _study_file(tmp_path, "grid: {width: [1, 2]}\n")
    stores.open_study(load_study(path), stores.open_storage(None, tmp_path / "out"), tmp_path / "out")
    journal = tmp_path / "out" / "journal.log"
    lines = journal.read_bytes().splitlines(keepends=True)
    raw, line = {
        "cut short": (b"".join(lines[:-1]) + lines[-1][:10], len(lines)),
        "garbage appended": (b"".join(lines) + b"\x00\xff x\n", len(lines) + 1),
        "a line changed": (b"".join(lines[:2]) + b"{not json\n" + b"".join(lines[3:]), 3),
    }[damage]
    journal.write_bytes(raw)
    for args in (("report", "out", "-f", "json"), ("run", "study.yaml", "--data-dir", "data", "--out", "out")):
        done = run_mgspec(tmp_path, "study", *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"journal.log:{line}: line {line} is not an entry Optuna wrote" in done.stderr
        assert ("the last write did not finish" in done.stderr) == (damage == "cut short")
        assert "Traceback" not in done.stderr and journal.read_bytes() == raw


def test_a_trial_that_fails_before_its_run_began_points_at_no_directory(tmp_path, monkeypatch):
    import mgspec.train

    path = _study_file(tmp_path, "grid: {width: [1]}\n")

    def refused(*args, **kwargs):
        raise RuntimeError("the node ran out of memory")

    monkeypatch.setattr(mgspec.train, "prepare", refused)
    assert workers.work(_job(tmp_path, path), log=lambda m: None)["failed"] == 1
    (trial,) = _trials(tmp_path)
    assert trial.state.name == "FAIL" and trial.user_attrs["run_dir"] is None
    assert trial.user_attrs["reason"] == "RuntimeError: the node ran out of memory"
    assert not (tmp_path / "out" / "trials").exists()


_HOLDER = """
import sys, time
from pathlib import Path
from mgspec.study import locks
from mgspec.study import storage as stores
out = Path(sys.argv[1])
with locks.locked(stores.open_storage(None, out), out, "s"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_leaves_no_lock_and_a_live_one_is_never_broken(tmp_path):
    """The journal's study lock is the kernel's: a holder killed with SIGKILL holds nothing at
    once (no grace period to wait out), and one that holds it, however long, keeps it."""
    storage = stores.open_storage(None, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        got = threading.Event()

        def waiter():
            with locks.locked(storage, tmp_path, "s"):
                got.set()

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert not got.wait(3), "the lock was taken from a live holder"
        holder.kill()
        holder.wait()
        assert got.wait(10), "a killed holder's lock was not free"
    finally:
        holder.kill()


def test_a_worker_waiting_for_the_lock_stops_when_told(tmp_path):
    storage = stores.open_storage(None, tmp_path)
    told = threading.Event()

    def wait():
        if told.is_set():
            raise workers.Interrupted

    with locks.locked(storage, tmp_path, "s"):
        told.set()
        with pytest.raises(workers.Interrupted):
            with locks.locked(storage, tmp_path, "s", wait):
                pass


def test_a_signal_while_a_worker_starts_reaches_that_worker(tmp_path, monkeypatch):
    """SIGTERM to ``study run --jobs 2`` as its first worker process starts (before the runner
    holds it in its list): that worker is stopped too, and no second one starts."""
    from mgspec.study import executors

    path = _study_file(tmp_path, "grid: {width: [1, 2]}\n")
    stores.open_study(load_study(path), stores.open_storage(None, tmp_path / "out"), tmp_path / "out")
    started = []
    real = subprocess.Popen

    def popen(*args, **kwargs):
        process = real(*args, **kwargs)
        started.append(process)
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler runs before this returns
        return process

    monkeypatch.setattr(executors.subprocess, "Popen", popen)
    assert executors.run_local(_job(tmp_path, path), jobs=2, cores=2, log=lambda m: None) == executors.INTERRUPTED
    assert len(started) == 1 and started[0].returncode in (143, -signal.SIGTERM)
    assert not [t for t in _trials(tmp_path) if t.state.name == "COMPLETE"], "the worker trained on"


def test_slurm_is_asked_about_a_job_once_in_a_while(tmp_path, monkeypatch):
    """A report or a wait over many trials of one job asks squeue once per SLURM_ANSWER_S."""
    asked = tmp_path / "asked"
    squeue = tmp_path / "bin" / "squeue"
    squeue.parent.mkdir()
    squeue.write_text(f'#!/bin/sh\necho "$@" >> {asked}\necho RUNNING\n')
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{squeue.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(claims, "_answers", {})
    assert [claims.slurm_job_alive("41") for _ in range(5)] == [True] * 5
    assert claims.slurm_job_alive("42") is True
    assert asked.read_text().splitlines() == ["-h -j 41 -o %T", "-h -j 42 -o %T"]
    monkeypatch.setattr(claims, "SLURM_ANSWER_S", 0.0)
    assert claims.slurm_job_alive("41") is True
    assert len(asked.read_text().splitlines()) == 3


def test_a_search_draw_whose_worker_died_before_claiming_it_is_pruned(tmp_path):
    """kill -9 between Optuna's ask and the claim: the draw has no seed, nothing to continue;
    the next worker prunes it as spare (else it shows as interrupted, and every run exits 1)."""
    path = _study_file(tmp_path, "search:\n  trials: 1\n  space:\n    width: [1, 2]\n")
    storage = stores.open_storage(None, tmp_path / "out")
    handle = stores.open_study(load_study(path), storage, tmp_path / "out")
    dead = handle.ask()
    handle._storage.set_trial_user_attr(dead._trial_id, "owner", {**claims.owner(), "started": "gone"})
    live = handle.ask()  # a draw in progress in a live worker: left alone
    handle._storage.set_trial_user_attr(live._trial_id, "owner", claims.owner())
    assert claims.take_over(handle, log=lambda m: None) == 0
    states = {t.number: (t.state.name, t.user_attrs.get("spare")) for t in handle.get_trials()}
    assert states == {dead.number: ("PRUNED", True), live.number: ("RUNNING", None)}


def test_a_pruned_seed_is_not_queued_again_by_each_worker(tmp_path):
    """A queued seed that a worker pruned (its check failed there) counts as that seed."""
    path = _study_file(tmp_path, "seeds: 2\nsearch:\n  trials: 1\n  space:\n    width: [1, 2]\n")
    study = load_study(path)
    handle = stores.open_study(study, stores.open_storage(None, tmp_path / "out"), tmp_path / "out")
    first = handle.ask()
    params = {"width": first.suggest_categorical("width", [1, 2])}
    first.set_user_attr("point", points.key(params))
    first.set_user_attr("seed", 0)
    handle.tell(first, 0.5)
    handle.enqueue_trial(params, user_attrs={"seed": 1, "point": points.key(params)})
    second = handle.ask()
    handle.tell(second, state=optuna.trial.TrialState.PRUNED)
    assert draws.complete_seeds(study, handle) == 0
    assert len(handle.get_trials()) == 2


def test_a_training_flag_never_outlives_its_training():
    def stopped():
        raise workers.Interrupted

    with pytest.raises(workers.Interrupted):
        with workers._stoppable(stopped):
            pass
    assert not workers._TRAINING.is_set()


def test_slurm_warning_leaves_the_trial_interrupted_before_submitit_acts(tmp_path, monkeypatch):
    """submitit's requeue signal (SIGUSR2) in the middle of a draw: the draw completes, the trial
    is left interrupted, and only then does submitit's own handler run; here the task was
    requeued as often as allowed, so submitit ends it with its error, and the trial waits for
    the next ``study run`` (it is not recorded as failed)."""
    submitit = pytest.importorskip("submitit", reason="the Slurm executor needs the study extra")
    from submitit.core import job_environment, utils
    from submitit.slurm.slurm import SlurmJobEnvironment

    from mgspec.study import executors

    path = _study_file(tmp_path, "grid: {width: [1, 2]}\n")
    delayed = utils.DelayedSubmission(executors.SlurmWorker(), _job(tmp_path, path))
    delayed.set_timeout(1, 0)  # a one-minute job with no requeue left
    paths = utils.JobPaths(tmp_path / "slurm", job_id="7")
    paths.folder.mkdir(parents=True)
    handler = job_environment.SignalHandler(SlurmJobEnvironment(), paths, delayed)
    previous = signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)
    try:
        monkeypatch.setattr(points, "check", _signalled_while(points.check, signal.SIGUSR2))
        with pytest.raises(submitit.core.utils.UncompletedJobError, match="timed-out too many times"):
            delayed.result()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    first = _trials(tmp_path)[0]
    assert first.state.name == "RUNNING" and first.user_attrs["interrupted"] is True
    assert "weights" in first.user_attrs, "the draw ran to its end"
    assert paths.submitted_pickle.exists(), "submitit checkpointed the task"


def test_a_file_system_that_cannot_lock_is_one_clear_error(tmp_path, monkeypatch):
    """NFS mounted without its lock manager answers flock with ENOLCK: the study says what to do."""
    import errno
    import fcntl

    from mgspec.errors import SpecError

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    storage = stores.open_storage(None, tmp_path)
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(SpecError) as refused:
        with locks.locked(storage, tmp_path, "s"):
            pass
    assert str(refused.value).startswith(f"{tmp_path / 'journal.log.mgspec.lock'}: the file system cannot lock")
    assert "PostgreSQL" in refused.value.hint


def test_a_trial_another_machine_just_took_is_not_taken_over(tmp_path):
    """Between taking a trial and its first heartbeat (its check, its draw) the trial is as old as
    its start: another machine's run must not judge its worker gone and continue it twice."""
    path = _study_file(tmp_path, "grid: {width: [1]}\n")
    study = load_study(path)
    handle = stores.open_study(study, stores.open_storage(None, tmp_path / "out"), tmp_path / "out")
    trial = draws.next_trial(study, handle)
    elsewhere = {**claims.owner(), "host": "node-a", "pid": 1, "slurm_job": None}
    handle._storage.set_trial_user_attr(trial._trial_id, "owner", elsewhere)
    taken = handle.trials[trial.number]
    assert abs(taken.user_attrs["heartbeat"] - time.time()) < 60 and not claims.stale(taken)
    assert claims.take_over(handle, log=lambda m: None) == 0
    assert handle.trials[trial.number].state.name == "RUNNING"
    assert claims.stale(taken, now=time.time() + claims.GRACE_S + 1), "a worker that never beat again is gone"
    import datetime

    older = optuna.trial.FrozenTrial(  # taken by an earlier version, which set no heartbeat with the owner
        number=0, state=optuna.trial.TrialState.RUNNING, value=None, datetime_start=datetime.datetime.now(),
        datetime_complete=None, params={}, distributions={}, user_attrs={"owner": elsewhere, "seed": 0},
        system_attrs={}, intermediate_values={}, trial_id=0,
    )  # fmt: skip
    assert not claims.stale(older), "before its first heartbeat a trial is as old as its start"


def test_a_worker_whose_trial_was_continued_meanwhile_goes_on_without_it(tmp_path, monkeypatch):
    """Another process judged this worker gone while it checked its trial, and continued the
    trial: the worker's next write is refused by Optuna; it says so and trains the next trial."""
    path = _study_file(tmp_path, "grid: {width: [1]}\n")
    real = points.check

    def continued_elsewhere(study, params, *args):
        if not _trials(tmp_path)[0].user_attrs.get("interrupted"):
            other = optuna.load_study(study_name="c", storage=stores.open_storage(None, tmp_path / "out"))
            other._storage.set_trial_user_attr(other.trials[0]._trial_id, "interrupted", True)
            assert claims.take_over(other, log=lambda m: None) == 1  # as another machine's run does
        return real(study, params, *args)

    monkeypatch.setattr(points, "check", continued_elsewhere)
    monkeypatch.setattr(workers, "_train", _trained_at_once)
    said = []
    assert workers.work(_job(tmp_path, path), log=said.append) == {"complete": 1, "failed": 0, "pruned": 0}
    assert "trial 0 was continued by another process meanwhile: it trains there" in said
    first, continuation = _trials(tmp_path)
    assert first.state.name == "FAIL" and first.user_attrs[claims.TAKEN_OVER] is True
    assert continuation.state.name == "COMPLETE" and continuation.user_attrs["retry_of"] == 0


@pytest.mark.parametrize(
    ("error", "state"),
    [(ValueError("Cannot set different distribution kind"), "PRUNED"), (ConnectionError("gone"), "RUNNING")],
)
def test_only_optunas_refusal_of_an_axis_is_a_bad_draw(tmp_path, error, state):
    """Optuna refusing a distribution is the study's fault: the draw is pruned with the reason (not a
    failure that would make every later run exit 1). Anything else (a storage gone) is not a bad
    range: it propagates, and the draw, still running, is pruned as spare by the next run."""
    from mgspec.errors import SpecError

    path = _study_file(tmp_path, "search:\n  trials: 1\n  space:\n    width: [1, 2]\n")
    study = load_study(path)
    handle = stores.open_study(study, stores.open_storage(None, tmp_path / "out"), tmp_path / "out")
    trial = draws.next_trial(study, handle)

    def refused(*args, **kwargs):
        raise error

    trial.suggest_categorical = refused
    with pytest.raises(SpecError if isinstance(error, ValueError) else type(error)) as raised:
        draws.draw(study, handle, trial, str(tmp_path / "data"), "cpu")
    (drawn,) = _trials(tmp_path)
    assert drawn.state.name == state
    if state == "PRUNED":
        assert "trial 0: cannot draw its parameters: ValueError: width: Cannot set" in str(raised.value)
        assert drawn.user_attrs["reason"].startswith("cannot draw its parameters: ValueError: width:")


NATIVE_IMPORTS = """
import json, sys
from mgspec.study import worker
real, new = worker._train, []
def watched(*args, **kwargs):
    before = set(sys.modules)
    try:
        return real(*args, **kwargs)
    finally:
        for name in sorted(set(sys.modules) - before):
            path = getattr(sys.modules[name], "__file__", None) or ""
            if path.endswith((".so", ".pyd")) and "site-packages" in path:
                new.append(name)
worker._train = watched
job = worker.Job(**json.loads(sys.argv[1]))
print(json.dumps([worker.work(job, log=lambda m: None), new]))
"""


def test_no_native_module_is_first_imported_inside_a_training(tmp_path):
    """A signal stops a training by raising where the training is; raised inside a native module's
    initialisation (Triton's, which the first model build imported) it aborted the worker
    ("terminate called after throwing an instance of 'nanobind::python_error'"), its trial never
    marked interrupted. So a worker imports them before its first training: in a fresh process,
    no third-party extension module loads while a trial trains."""
    import dataclasses

    path = _study_file(tmp_path, "grid: {width: [1]}\n")
    job = json.dumps(dataclasses.asdict(_job(tmp_path, path)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", NATIVE_IMPORTS, job], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    counts, imported = json.loads(done.stdout.splitlines()[-1])
    assert counts["complete"] == 1 and imported == []
