"""Where a study's trials live: Optuna storages, the study's definition, and taking over interrupted trials.

The default storage is Optuna's ``JournalStorage`` with a file backend, ``<out>/journal.log``
(safe for many processes on one machine); ``--storage postgresql://...`` shares a study across
machines (psycopg 3). The process that creates the Optuna study records the study file's
definition and queues every grid point and seed; every later process checks that its study
file has the same definition (and refuses one that differs, saying where).

A trial whose worker is gone (killed, preempted, or stopped by a signal, which marks it
``interrupted``) is taken over by the next ``study run``: it is marked failed and a new trial
with the same parameters, seed and run directory is queued (``retry_of`` names the old one),
so training resumes from the run's checkpoint. Reports leave superseded trials out.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from mgspec.errors import Location, SpecError
from mgspec.study import points, require
from mgspec.study.model import Study

DEFINITION, READY = "mgspec_definition", "mgspec_ready"
#: The training defaults a study was created with (a study made before they were recorded: see
#: :func:`recorded_defaults`).
DEFAULTS = "mgspec_defaults"
#: Set on a trial :func:`take_over` failed in order to continue it (so it is never retried as well).
TAKEN_OVER = "taken_over"
#: A running trial whose heartbeat is older than this (seconds) is taken over by the next run.
GRACE_S = 600
HEARTBEAT_S = 60


def redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def open_storage(url: str | None, out: Path, parallel: bool = True):
    """The Optuna storage: a journal file in ``out`` by default, or a database URL."""
    optuna = require("optuna")
    where = Location(f"--storage {redact(url)}") if url else Location(str(out / "journal.log"))
    if url is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        out.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(out / "journal.log")))
    if url.startswith("sqlite") and parallel:
        raise SpecError(
            "SQLite cannot take parallel writers", where, hint="leave out --storage (a journal file) or use PostgreSQL"
        )
    if re.match(r"postgres(ql)?://", url):
        require("psycopg")
        url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    elif not re.match(r"(postgresql\+psycopg|sqlite|mysql[+a-z]*)://", url):
        raise SpecError("unknown storage", where, hint="use postgresql://USER@HOST:PORT/DB, or leave out --storage")
    try:
        return _rdb_storage(optuna, url)
    except Exception as exc:  # connection refused, unknown database, bad credentials
        reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise SpecError(f"cannot open the storage: {reason}", where) from None


def _rdb_storage(optuna, url: str, attempts: int = 5):
    """Optuna's RDBStorage; processes that create its tables at the same moment try again.

    Optuna creates the schema on first use; two processes doing so at once on PostgreSQL make
    one of them fail with a unique violation (on a table or type name). The tables then exist,
    so opening again succeeds.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except (IntegrityError, ProgrammingError):
            time.sleep(0.2 * attempt)
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def _sampler(study: Study):
    optuna = require("optuna")
    kind = study.model.search.sampler if study.is_search else "random"
    if kind is None:
        kind = "nsga2" if len(study.objectives) > 1 else "tpe"
    return {
        "nsga2": optuna.samplers.NSGAIISampler,
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
    }[kind]()


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted paths where two definitions differ."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b, path = old.get(k), new.get(k), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, path + ".")
        elif a != b:
            out.append("the spec file's text" if path == "spec_text" else f"{path} ({a!r} -> {b!r})")
    return out


def open_study(study: Study, storage, wait_s: float = 60.0):
    """Create the Optuna study (recording the definition, queueing the grid) or continue it."""
    optuna = require("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = list(study.objectives.values())
    definition = study.definition()
    try:
        handle = optuna.create_study(
            study_name=study.name, storage=storage, directions=directions, sampler=_sampler(study)
        )
    except optuna.exceptions.DuplicatedStudyError:
        handle = optuna.load_study(study_name=study.name, storage=storage, sampler=_sampler(study))
    else:
        handle.set_user_attr(DEFINITION, definition)
        handle.set_user_attr(DEFAULTS, current_defaults())
        for point in points.grid_points(study) if not study.is_search else ():
            for seed in range(study.model.seed, study.model.seed + study.model.seeds):
                handle.enqueue_trial(point, user_attrs={"seed": seed, "point": points.key(point)})
        handle.set_user_attr(READY, True)
    deadline = time.monotonic() + wait_s
    while READY not in handle.user_attrs and time.monotonic() < deadline:  # another process is creating it
        time.sleep(0.5)
    if READY in handle.user_attrs and DEFAULTS not in handle.user_attrs:
        handle.set_user_attr(DEFAULTS, recorded_defaults(handle))
    stored = handle.user_attrs.get(DEFINITION)
    if stored != definition:
        what = "; ".join(differences(stored or {}, definition)) or "it is not set up"
        changed = [k for k in definition if k in study.source.data and (stored or {}).get(k) != definition[k]]
        raise SpecError(
            f"the study {study.name!r} in this storage was made from a different study file: {what}",
            study.locate(changed[0]) if changed else Location(str(study.path)),
            hint="restore the file, or give the changed study another name (or --out)",
        )
    return handle


def current_defaults() -> dict:
    """The defaults a study created now records (a study file's ``train:`` overrides them)."""
    from mgspec.run_options import DEFAULT_VAL_SPLIT

    return {"val_split": DEFAULT_VAL_SPLIT}


def recorded_defaults(handle) -> dict:
    """The defaults of a study made before they were recorded, read from what its trials did.

    Trials that completed record what they were selected on: with a validation split (the
    default from when trials first held one out) or without (the releases before: every trial
    trained on the whole training set, ``val_split`` 0). A study none of whose trials completed
    takes today's defaults: nothing trained differs.
    """
    state = require("optuna").trial.TrialState
    done = [t for t in handle.get_trials(deepcopy=False, states=(state.COMPLETE,)) if "seed" in t.user_attrs]
    defaults = current_defaults()
    if done and not any(
        t.user_attrs.get("val_acc") is not None or t.user_attrs.get("selected_on") == "val" for t in done
    ):
        defaults["val_split"] = 0.0
    return defaults


def default_val_split(handle) -> float:
    """The validation split of a trial whose study does not set one: the study's own default.

    Every trial of a study selects the same way, also when the default changed since the study
    was created (its later trials would otherwise select on validation, its earlier on test).
    """
    return float(handle.user_attrs.get(DEFAULTS, current_defaults())["val_split"])


def owner() -> dict:
    """Who runs a trial: host, process (and its start), and the Slurm job when there is one."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": _start_time(os.getpid()),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart": os.environ.get("SLURM_RESTART_COUNT", "0"),
    }


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def slurm_job_alive(job: str) -> bool | None:
    if shutil.which("squeue") is None:
        return None
    try:
        done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode == 0 and bool(done.stdout.strip())


def stale(trial, now: float | None = None) -> bool:
    """Whether a running trial's worker is gone (so its trial may be taken over)."""
    attrs = trial.user_attrs
    if attrs.get("interrupted"):
        return True
    who = attrs.get("owner")
    if not who:
        start = trial.datetime_start.timestamp() if trial.datetime_start else 0
        return (now or time.time()) - start > GRACE_S
    if who.get("slurm_job"):
        alive = slurm_job_alive(who["slurm_job"])
        mine = os.environ.get("SLURM_JOB_ID") == who["slurm_job"]
        if alive is False or (mine and os.environ.get("SLURM_RESTART_COUNT", "0") != who.get("slurm_restart")):
            return True
    elif who.get("host") == socket.gethostname():
        return _start_time(int(who["pid"])) != who.get("started")
    return (now or time.time()) - float(attrs.get("heartbeat", 0)) > GRACE_S


def take_over(handle, log=print) -> int:
    """Queue again every interrupted trial whose worker is gone; returns how many."""
    optuna = require("optuna")
    state = optuna.trial.TrialState
    trials = handle.get_trials(deepcopy=False)
    taken = 0
    for trial in trials:
        if trial.state != state.RUNNING or "seed" not in trial.user_attrs or not stale(trial):
            continue
        try:
            handle._storage.set_trial_user_attr(trial._trial_id, "reason", "interrupted; continued by a new trial")
            handle._storage.set_trial_user_attr(trial._trial_id, TAKEN_OVER, True)
            handle.tell(trial.number, state=state.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
            continue  # another process took it over first
        attrs = {k: trial.user_attrs[k] for k in ("seed", "point", "run_dir") if k in trial.user_attrs}
        handle.enqueue_trial(trial.params, user_attrs={**attrs, "retry_of": trial.number})
        log(f"trial {trial.number} was interrupted: it continues from {attrs.get('run_dir', 'its run directory')}")
        taken += 1
    return taken


def retry_failed(handle, log=print) -> int:
    """Queue every failed trial again, each as a new trial in a new run directory; returns how many.

    A failed trial stays failed on a plain re-run (a diverged training would diverge again);
    ``--retry-failed`` trains its point and seed once more, when what failed was passing (memory,
    a node, a file system). The new trial names the old one in ``retry_of``, so reports show the
    new one; the old run directory is left as it was.
    """
    state = require("optuna").trial.TrialState
    trials = handle.get_trials(deepcopy=False)
    continued = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    queued = 0
    for trial in trials:
        if trial.state != state.FAIL or "seed" not in trial.user_attrs or trial.number in continued:
            continue
        if trial.user_attrs.get(TAKEN_OVER):  # interrupted, and continued by take_over (perhaps just now)
            continue
        attrs = {k: trial.user_attrs[k] for k in ("seed", "point") if k in trial.user_attrs}
        handle.enqueue_trial(trial.params, user_attrs={**attrs, "retry_of": trial.number})
        reason = (trial.user_attrs.get("reason") or "no reason").splitlines()[0]
        log(f"trial {trial.number} failed ({reason}): trained again")
        queued += 1
    return queued


def wait_for_others(handle, log=print, poll_s: float = 2.0) -> None:
    """Wait while other processes (sharing the study's storage) still train trials of it.

    A trial whose worker is gone (see :func:`stale`) is not waited for: it stays unfinished,
    and the next ``study run`` continues it.
    """
    state = require("optuna").trial.TrialState
    me = (socket.gethostname(), os.getpid())
    told = False
    while True:
        running = [
            t
            for t in handle.get_trials(deepcopy=False, states=(state.RUNNING,))
            if (t.user_attrs.get("owner", {}).get("host"), t.user_attrs.get("owner", {}).get("pid")) != me
            and not stale(t)
        ]
        if not running:
            return
        if not told:
            numbers = ", ".join(str(t.number) for t in running)
            log(f"waiting for trials {numbers}, which other processes are training")
            told = True
        time.sleep(poll_s)
