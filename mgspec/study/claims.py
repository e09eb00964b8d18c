"""Who trains which trial: owners, a study-wide lock, and continuing the trials of workers that are gone.

Optuna hands each queued trial to one worker (taking a waiting trial is atomic in every
storage); the steps that read the study and then write it run under the study's lock
(:mod:`mgspec.study.locks`). A step stopped half-way is finished by the next holder: a study
whose grid was not all queued gets the rest, a search point whose other seeds were not all
queued gets them, a trial failed in order to be continued gets its continuation, a search draw
whose worker died before claiming it is pruned.

A running trial records its ``owner`` (host, process and its start time, Slurm job) and a
``heartbeat``; it is *stale*, and taken over, when it is marked ``interrupted``, its process is
gone (same host), its Slurm job left the queue, or its heartbeat (before the first: the time it
was taken) is older than :data:`GRACE_S`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from mgspec.study import require

#: Set on a trial :func:`take_over` failed in order to continue it (so it is never retried as well).
TAKEN_OVER = "taken_over"
#: A running trial whose heartbeat is older than this (seconds) is taken over by the next run.
GRACE_S = 600
HEARTBEAT_S = 60


def owner() -> dict:
    """Who runs a trial: host, process (its start, its PID namespace), and the Slurm job when there is one."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_ns": _pid_namespace(),
        "started": _start_time(os.getpid()),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart": os.environ.get("SLURM_RESTART_COUNT", "0"),
    }


def _pid_namespace() -> str | None:
    """This process's PID namespace: containers sharing a host name (``--network host``) see
    different processes under the same ids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _mine(who: dict) -> bool:
    """Whether ``who`` ran on this machine, among the processes this one sees (an owner recorded
    before namespaces were, on this host, is taken as this one's)."""
    return who.get("host") == socket.gethostname() and who.get("pid_ns", _pid_namespace()) == _pid_namespace()


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


#: How long (seconds) an answer of Slurm's about a job is taken as current: a report or a wait
#: over many running trials asks ``squeue`` once per job, not once per trial and poll.
SLURM_ANSWER_S = 20.0
_answers: dict[str, tuple[float, bool | None]] = {}


def slurm_job_alive(job: str) -> bool | None:
    """Whether Slurm still has ``job`` queued or running; None when Slurm cannot say (no squeue,
    the controller unreachable): an unknown job is not a dead one."""
    asked, answer = _answers.get(job, (float("-inf"), None))
    if time.monotonic() - asked < SLURM_ANSWER_S:
        return answer
    answer = _ask_slurm(job)
    _answers[job] = (time.monotonic(), answer)
    return answer


def _ask_slurm(job: str) -> bool | None:
    if shutil.which("squeue") is None:
        return None
    try:
        done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode == 0:
        return bool(done.stdout.strip())
    return False if "invalid job id" in done.stderr.lower() else None  # finished and purged from the queue


def stale(trial, now: float | None = None) -> bool:
    """Whether a running trial's worker is gone (so its trial may be taken over)."""
    attrs = trial.user_attrs
    if attrs.get("interrupted"):
        return True
    who = attrs.get("owner")
    now = now or time.time()
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0
    if not who:
        return now - start > GRACE_S
    if _mine(who) and who.get("pid") is not None:
        return _start_time(int(who["pid"])) != who.get("started")  # this machine knows its processes
    if who.get("slurm_job"):
        alive = slurm_job_alive(who["slurm_job"])
        mine = os.environ.get("SLURM_JOB_ID") == who["slurm_job"]
        if alive is False or (mine and os.environ.get("SLURM_RESTART_COUNT", "0") != who.get("slurm_restart")):
            return True
    # Taken but not yet training (no heartbeat yet): as old as the trial.
    return now - float(attrs.get("heartbeat") or start) > GRACE_S


def params(trial) -> dict:
    """A trial's parameters; one taken before its worker set them has its point's (the same)."""
    return dict(trial.params) or json.loads(trial.user_attrs.get("point") or "{}")


def take_over(handle, log=print) -> int:
    """Queue again every interrupted trial whose worker is gone; returns how many (hold
    :func:`mgspec.study.locks.locked`).

    The trial is failed (marked :data:`TAKEN_OVER`) and a new trial with its parameters, seed and
    run directory is queued, so training resumes from the run's checkpoint. A trial failed so
    whose continuation was never queued (its taker stopped in between) gets it now.
    """
    optuna = require("optuna")
    state = optuna.trial.TrialState
    trials = handle.get_trials(deepcopy=False)
    continued = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    taken = 0
    for trial in trials:
        if "seed" not in trial.user_attrs and trial.state == state.RUNNING and stale(trial):
            _drop_draw(handle, trial, state)  # a search draw whose worker died before claiming it
            continue
        if "seed" not in trial.user_attrs or trial.number in continued:
            continue
        if trial.state == state.RUNNING and stale(trial):
            try:
                handle._storage.set_trial_user_attr(trial._trial_id, "reason", "interrupted; continued by a new trial")
                handle._storage.set_trial_user_attr(trial._trial_id, TAKEN_OVER, True)
                handle.tell(trial.number, state=state.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
                continue  # it finished meanwhile
        elif not (trial.state == state.FAIL and trial.user_attrs.get(TAKEN_OVER)):
            continue
        attrs = {k: trial.user_attrs[k] for k in ("seed", "point", "run_dir") if k in trial.user_attrs}
        handle.enqueue_trial(params(trial), user_attrs={**attrs, "retry_of": trial.number})
        log(f"trial {trial.number} was interrupted: it continues from {attrs.get('run_dir') or 'its run directory'}")
        taken += 1
    return taken


def _drop_draw(handle, trial, state) -> None:
    """Prune a search draw never claimed (its worker died in between): nothing to continue."""
    optuna = require("optuna")
    try:
        handle._storage.set_trial_user_attr(trial._trial_id, "reason", "drawn as its worker stopped")
        handle._storage.set_trial_user_attr(trial._trial_id, "spare", True)
        handle.tell(trial.number, state=state.PRUNED)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
        pass  # finished meanwhile


def retry_failed(handle, log=print) -> int:
    """Queue every failed trial again, each as a new trial in a new run directory; returns how many.

    A failed trial stays failed on a plain re-run (a diverged training would diverge again);
    ``--retry-failed`` trains its point and seed once more, when what failed was passing (memory,
    a node, a file system). The new trial names the old one in ``retry_of``, so reports show the
    new one; the old run directory is left as it was. Hold :func:`mgspec.study.locks.locked`.
    """
    state = require("optuna").trial.TrialState
    trials = handle.get_trials(deepcopy=False)
    continued = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    queued = 0
    for trial in trials:
        if trial.state != state.FAIL or "seed" not in trial.user_attrs or trial.number in continued:
            continue
        if trial.user_attrs.get(TAKEN_OVER):  # interrupted: take_over continues it in its run directory
            continue
        attrs = {k: trial.user_attrs[k] for k in ("seed", "point") if k in trial.user_attrs}
        handle.enqueue_trial(params(trial), user_attrs={**attrs, "retry_of": trial.number})
        reason = (trial.user_attrs.get("reason") or "no reason").splitlines()[0]
        log(f"trial {trial.number} failed ({reason}): trained again")
        queued += 1
    return queued


def _who(owner: dict) -> tuple:
    return owner.get("host"), owner.get("pid_ns", _pid_namespace()), owner.get("pid")


def wait_for_others(handle, log=print, poll_s: float = 2.0) -> None:
    """Wait while other processes (sharing the study's storage) still train trials of it.

    A trial whose worker is gone (see :func:`stale`) is not waited for: it stays unfinished,
    and the next ``study run`` continues it.
    """
    state = require("optuna").trial.TrialState
    me = _who(owner())
    told = False
    while True:
        running = [
            t
            for t in handle.get_trials(deepcopy=False, states=(state.RUNNING,))
            if _who(t.user_attrs.get("owner") or {}) != me and not stale(t)
        ]
        if not running:
            return
        if not told:
            numbers = ", ".join(str(t.number) for t in running)
            log(f"waiting for trials {numbers}, which other processes are training")
            told = True
        time.sleep(poll_s)
