"""A study worker: takes trials from the Optuna study one after the other and trains each.

Each trial is an ordinary ``mgspec train`` run directory, ``<out>/trials/<number>-seed<k>/``
(a continued trial keeps the directory of the one it continues, and resumes from its
checkpoint). The trial records its seed, weights, MACs, run directory, test accuracy and (with a
validation split) validation accuracy as user attributes; its accuracy objective is the
validation accuracy where there is a split, so a search never selects on the test set. A
failure is recorded with its reason and the worker goes on. Which trial comes next, and what
a search draw prunes, is :mod:`mgspec.study.draws`. SIGTERM (Slurm's scancel, a preemption) or
SIGINT (Ctrl-C) stops a training at once and marks its trial interrupted, so the next ``study
run`` continues it; elsewhere the worker stops between two steps of its bookkeeping.
``python -m mgspec.study.worker JOB.json`` runs one worker.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mgspec import runs
from mgspec.errors import SpecError
from mgspec.load import value_text
from mgspec.study import claims, draws, locks, points, require
from mgspec.study import storage as stores
from mgspec.study.model import Study, load_study


@dataclass
class Job:
    """What one worker needs; plain data, so it crosses process and Slurm boundaries."""

    study_file: str
    out: str
    storage: str | None = None
    data_dir: str = "data"
    device: str = "cpu"
    threads: int | None = None
    tensorboard: bool = False
    worker: int = 0


class Interrupted(BaseException):
    """SIGTERM or SIGINT (or the Slurm requeue signal) arrived: the trial in progress is left to
    the next run."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


#: Set by the first SIGTERM or SIGINT a worker gets: Ctrl-C and the runner's SIGTERM both come, and
#: the second must not interrupt the first one's bookkeeping (nor be ignored with a race warning).
_STOPPING = threading.Event()
#: Set while the worker trains: only then does a signal stop it at once. Elsewhere (the study's
#: bookkeeping: a draw and its claim, a lock, a storage write) the worker stops at the next step
#: between two writes, so no write is cut half-way and no claim is left without its owner.
_TRAINING = threading.Event()
#: The signal that set :data:`_STOPPING`.
_STOPPED_BY: list[int] = []


def _terminate(signum, frame):
    if not _STOPPING.is_set():
        _STOPPED_BY[:] = [signum]
        _STOPPING.set()
        if _TRAINING.is_set():
            raise Interrupted(signum)


def _stop_here() -> None:
    """Stop (raise :class:`Interrupted`) when a signal came while the worker was not training."""
    if _STOPPING.is_set():
        raise Interrupted(*_STOPPED_BY[:1])


@contextlib.contextmanager
def _stoppable(stop) -> Iterator[None]:
    """A training, which a signal stops at once (it continues from its checkpoint)."""
    if stop is None:
        yield
        return
    try:
        _TRAINING.set()  # first: a signal from here on stops the training, and none is lost
        stop()
        yield
    finally:
        _TRAINING.clear()


def work(job: Job, log=print, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> dict:
    """Train trials until the study has none left; returns counts by outcome.

    Any of ``signals`` stops the worker (:class:`Interrupted`, carrying the signal), its trial
    left interrupted for the next run.
    """
    study = load_study(job.study_file)
    out = Path(job.out)
    main = threading.current_thread() is threading.main_thread()
    stop = _stop_here if main else None  # signals reach the main thread only
    if main:
        _STOPPING.clear()
        _TRAINING.clear()
    previous = {s: signal.signal(s, _terminate) for s in signals} if main else {}
    _load_training()
    done = {"complete": 0, "failed": 0, "pruned": 0}
    lock = contextlib.nullcontext
    finished = require("optuna").exceptions.UpdateFinishedTrialError
    try:
        store = stores.open_storage(job.storage, out, parallel=False)  # the runner refused parallel SQLite
        handle = stores.open_study(study, store, out, stop)
        with locks.locked(store, out, study.name, stop):
            claims.take_over(handle, log)
            draws.complete_seeds(study, handle, log)
        if study.is_search:  # a draw reads the study, then claims a point in it: one process at a time
            lock = functools.partial(locks.locked, store, out, study.name, stop)
        while True:
            if stop is not None:
                stop()
            trial = None
            try:
                with lock():
                    if (trial := draws.next_trial(study, handle)) is None:
                        break
                    drawn = draws.draw(study, handle, trial, job.data_dir, job.device)
                if isinstance(drawn, str):
                    done[drawn] += 1
                else:
                    done[_guarded(trial, _train, study, handle, trial, *drawn, job, log, stop)] += 1
            except finished:  # another process judged this worker gone and continued the trial
                which = "a trial" if trial is None else f"trial {trial.number}"
                log(f"{which} was continued by another process meanwhile: it trains there")
        if stop is not None:  # a signal after the last training: the runner must not wait on
            stop()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return done


#: What a training imports on first use (``torch._dynamo``: the optimizer's first step; Triton:
#: ``mgspec.kernels``, where it is installed).
TRAINING_IMPORTS = ("numpy.random", "safetensors.torch", "torch._dynamo", "mgspec.build", "mgspec.kernels",
                    "mgspec.train.trainer")  # fmt: skip


def _load_training() -> None:
    """Import what a training imports on first use, before any training: a signal's exception raised
    while a native module initialises (Triton's, imported by the first model build) aborts the
    process instead of stopping it."""
    for name in TRAINING_IMPORTS:
        importlib.import_module(name)


def _guarded(trial, step, *args):
    """``step(*args)`` on a claimed ``trial``; when a signal stops it, the trial is left to the next run."""
    try:
        return step(*args)
    except Interrupted:
        with contextlib.suppress(Exception):
            trial.set_user_attr("interrupted", True)  # take_over continues it
        raise


def _run_dir(trial, seed: int, job: Job) -> tuple[Path, str]:
    """Where the trial trains, and what it records.

    With the journal in the study's directory, relative to it (a copied or moved directory keeps
    its trials). A shared database's trials live under the --out of whichever process trained
    them, so those are recorded in full; a continuation whose directory this machine does not
    have (another machine's --out) starts again under its own. A study made by an earlier
    version recorded absolute paths: when its directory was moved or copied since, the run is
    the one under ``trials/`` of this directory (and continues from its checkpoint there).
    """
    recorded = trial.user_attrs.get("run_dir")
    fresh = f"trials/{trial.number}-seed{seed}"
    out = Path(job.out).resolve()
    if recorded is not None and Path(recorded).is_absolute() and not Path(recorded).resolve().is_relative_to(out):
        moved = f"trials/{Path(recorded).name}"  # this directory's copy of it, when it was moved or copied
        if (out / moved).is_dir():
            recorded = moved if job.storage is None else str(Path(job.out) / moved)
        elif not Path(recorded).exists():
            recorded = None
    if recorded is None:
        recorded = fresh if job.storage is None else str(Path(job.out) / fresh)
    return Path(job.out) / recorded, recorded  # a study made before kept absolute paths: they stay


def _foreign(run_dir: Path, study: Study, params: dict) -> str | None:
    """Why ``run_dir`` holds another training than this trial's (None when it is this trial's)."""
    from mgspec.train import trainer

    try:
        stored = json.loads((run_dir / trainer.CONFIG).read_text()).get("experiment") or {}
    except (OSError, ValueError):
        return None  # no run there yet, or a broken one: prepare() says what is wrong
    if stored.get("study", study.name) != study.name:
        return f"{run_dir} holds a trial of the study {stored['study']!r}; give this study another --out"
    if "params" in stored and points.key(stored["params"]) != points.key(params):
        return f"{run_dir} holds the training of other parameters ({points.key(stored['params'])})"
    return None


def _train(study: Study, handle, trial, params: dict, seed: int, job: Job, log, stop=None) -> str:
    from mgspec.train import prepare, train, trainer

    optuna = require("optuna")
    run_dir, recorded = _run_dir(trial, seed, job)
    trial.set_user_attr("run_dir", recorded)
    trial.set_user_attr("owner", claims.owner())
    trial.set_user_attr("heartbeat", time.time())
    beat = _Heartbeat(handle, trial)
    setting = ", ".join(f"{p}={value_text(v)}" for p, v in params.items()) or "the spec as written"
    log(f"trial {trial.number}: {setting}, seed {seed} in {run_dir}")
    val_split = stores.default_val_split(handle)
    try:
        if (foreign := _foreign(run_dir, study, params)) is not None:
            raise SpecError(foreign)
        config = points.config(study, params, seed, job.data_dir, job.device, job.threads, val_split)
        experiment = {**(study.model.experiment or {}), "study": study.name, "trial": trial.number, "params": params}
        resume = (run_dir / trainer.CONFIG).is_file()
        spec = points.spec(study, params)
        explicit = tuple(config.as_dict()) if resume else ()  # a continuation keeps the recipe it began with
        with _stoppable(stop):
            run = prepare(spec, points.overrides(params), config, run_dir, resume=resume, explicit=explicit,
                          experiment=experiment)  # fmt: skip
            summary = train(run, progress=False, log=log)
    except Interrupted:
        beat.stop()
        resumes = "continues it from its checkpoint" if (run_dir / runs.CHECKPOINT).is_file() else "trains it"
        log(f"trial {trial.number} interrupted: a re-run {resumes}")
        raise
    except Exception as exc:  # a diverged or failed training: recorded, and the study goes on
        beat.stop()
        reason = str(exc) if isinstance(exc, SpecError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            trial.set_user_attr("reason", reason)
            if not run_dir.exists():  # failed before its run began: no directory to point at
                trial.set_user_attr("run_dir", None)
            handle.tell(trial, state=optuna.trial.TrialState.FAIL)
        log(f"trial {trial.number} failed: {reason}")
        _events(job, run_dir)  # the curve up to the failure (a divergence shows there)
        return "failed"
    beat.stop()
    try:
        _record(study, handle, trial, summary)
    except optuna.exceptions.UpdateFinishedTrialError:  # taken over while this worker looked gone
        log(f"trial {trial.number} was continued by another worker meanwhile; that trial records {run_dir}")
        return "complete"
    _events(job, run_dir)
    val = summary.get("best_val_acc")
    said = f", validation {100 * val:.2f}%" if val is not None else ""
    log(f"trial {trial.number}: test accuracy {100 * summary['best_test_acc']:.2f}%{said}")
    return "complete"


def _events(job: Job, run_dir: Path) -> None:
    """With --tensorboard, the run's epochs as TensorBoard event files (when it trained any)."""
    if job.tensorboard and (run_dir / "metrics.jsonl").is_file():
        from mgspec.study.tensorboard import write_events

        write_events(run_dir)


def _record(study: Study, handle, trial, summary: dict) -> None:
    """A completed trial's attributes and objective values."""
    trial.set_user_attr("test_acc", summary["best_test_acc"])
    trial.set_user_attr("final_test_acc", summary["final_test_acc"])
    trial.set_user_attr("val_acc", summary.get("best_val_acc"))
    trial.set_user_attr("selected_on", summary.get("selected_on", "test"))
    # The accuracy objective is the one the epoch was selected on: validation, where the trial has a split.
    accuracy = summary.get("best_val_acc")
    accuracy = summary["best_test_acc"] if accuracy is None else accuracy
    values = {"accuracy": accuracy, "weights": summary["weights"], "macs": summary["macs"]}
    handle.tell(trial, [values[name] for name in study.objectives])


class _Heartbeat:
    """Records that a trial's worker is alive, every HEARTBEAT_S seconds, in a daemon thread."""

    def __init__(self, handle, trial) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, args=(handle, trial), daemon=True)
        self.thread.start()

    def _beat(self, handle, trial) -> None:
        finished = require("optuna").exceptions.UpdateFinishedTrialError
        while not self.stopped.wait(claims.HEARTBEAT_S):
            try:
                handle._storage.set_trial_user_attr(trial._trial_id, "heartbeat", time.time())
            except finished:  # taken over meanwhile: nothing left to keep alive
                return
            except Exception:  # noqa: S112 - the storage briefly away: the next beat tries again
                continue

    def stop(self) -> None:
        self.stopped.set()


def main(argv: list[str]) -> int:
    job = Job(**json.loads(Path(argv[0]).read_text()))
    try:
        result = work(job, log=lambda m: print(f"[worker {job.worker}] {m}", flush=True))
    except Interrupted:
        return 143
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"[worker {job.worker}] done: {result['complete']} trained, {result['failed']} failed, "
        f"{result['pruned']} pruned",
        flush=True,
    )
    return 0


def as_json(job: Job) -> str:
    return json.dumps(asdict(job))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
