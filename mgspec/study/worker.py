"""A study worker: takes trials from the Optuna study one after the other and trains each.

Each trial is an ordinary ``mgspec train`` run directory, ``<out>/trials/<number>-seed<k>/``
(a continued trial keeps the directory of the one it continues, and resumes from its
checkpoint). The trial records its seed, weights, MACs, run directory, test accuracy and (with a
validation split) validation accuracy as user attributes; its accuracy objective is the
validation accuracy where there is a split, so a search never selects on the test set. A
failure is recorded with its reason and the worker goes on. A search point that is not a
valid spec, above ``max_weights`` or drawn before, is pruned and never trained. SIGTERM
(Slurm's scancel, a preemption) marks the running trial interrupted so the next ``study run``
continues it. ``python -m mgspec.study.worker JOB.json`` runs one worker.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mgspec.errors import SpecError
from mgspec.load import value_text
from mgspec.study import points, require
from mgspec.study import storage as stores
from mgspec.study.model import Range, Study, load_study

#: Pruned draws after which a search stops (its space has too few valid points left).
MAX_PRUNED = 200


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
    """SIGTERM arrived: the trial in progress is left to the next run."""


def _terminate(signum, frame):
    raise Interrupted


def work(job: Job, log=print) -> dict:
    """Train trials until the study has none left; returns counts by outcome."""
    study = load_study(job.study_file)
    store = stores.open_storage(job.storage, Path(job.out), parallel=False)  # the runner refused parallel SQLite
    handle = stores.open_study(study, store)
    stores.take_over(handle, log)
    previous = (
        signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    )
    done = {"complete": 0, "failed": 0, "pruned": 0}
    try:
        while (trial := _next(study, handle)) is not None:
            done[_run(study, handle, trial, job, log)] += 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return done


def _counted(study: Study, handle) -> tuple[int, int]:
    """A search's draws so far that count towards ``trials``, and its pruned draws."""
    state = require("optuna").trial.TrialState
    trials = handle.get_trials(deepcopy=False)
    drawn = sum(
        1
        for t in trials
        if t.state != state.PRUNED and t.user_attrs.get("seed") == study.model.seed and "retry_of" not in t.user_attrs
    )
    return drawn, sum(1 for t in trials if t.state == state.PRUNED and not t.user_attrs.get("spare"))


def _next(study: Study, handle):
    """The next trial to run, or None when the study has none left."""
    state = require("optuna").trial.TrialState
    waiting = handle.get_trials(deepcopy=False, states=(state.WAITING,))
    if not waiting and not study.is_search:
        return None
    if not waiting:
        drawn, pruned = _counted(study, handle)
        if drawn >= study.model.search.trials or pruned >= MAX_PRUNED:
            return None
    return handle.ask()


def _suggest(study: Study, trial) -> dict:
    params = {}
    for path, axis in study.model.axes.items():
        if isinstance(axis, Range):
            if axis.integer:
                params[path] = trial.suggest_int(
                    path, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log
                )
            else:
                params[path] = trial.suggest_float(path, axis.low, axis.high, step=axis.step, log=axis.log)
        else:
            params[path] = trial.suggest_categorical(path, axis)
    return params


def _prune(handle, trial, reason: str, **attrs) -> str:
    for name, value in {"reason": reason, **attrs}.items():
        trial.set_user_attr(name, value)
    handle.tell(trial, state=require("optuna").trial.TrialState.PRUNED)
    return "pruned"


def _run(study: Study, handle, trial, job: Job, log) -> str:
    params = _suggest(study, trial)
    seed = trial.user_attrs.get("seed")
    if seed is None and not study.is_search:
        return _prune(handle, trial, "nothing left to run", spare=True)
    trial.set_user_attr("point", points.key(params))
    try:
        weights, macs = points.check(study, params, job.data_dir, job.device)
    except SpecError as exc:
        return _prune(handle, trial, f"not a valid spec: {exc}")
    trial.set_user_attr("weights", weights)
    trial.set_user_attr("macs", macs)
    limit = study.model.search.max_weights if study.is_search else None
    if limit is not None and weights > limit:
        return _prune(handle, trial, f"{weights:,} weights, above max_weights {limit:,}")
    if seed is None:  # a fresh draw of a search
        drawn, _ = _counted(study, handle)
        if drawn >= study.model.search.trials:
            return _prune(handle, trial, "the search has all its trials", spare=True)
        earlier = _same_point(handle, trial, points.key(params), study.model.seed)
        if earlier is not None:
            return _prune(handle, trial, f"the same point as trial {earlier}")
        seed = study.model.seed
        trial.set_user_attr("seed", seed)
        for other in range(seed + 1, seed + study.model.seeds):
            handle.enqueue_trial(params, user_attrs={"seed": other, "point": points.key(params)})
    return _train(study, handle, trial, params, seed, job, log)


def _same_point(handle, trial, key: str, first_seed: int) -> int | None:
    state = require("optuna").trial.TrialState
    for other in handle.get_trials(deepcopy=False):
        if other.number != trial.number and other.user_attrs.get("point") == key and other.state != state.PRUNED:
            if other.user_attrs.get("seed") == first_seed:
                return other.number
    return None


def _train(study: Study, handle, trial, params: dict, seed: int, job: Job, log) -> str:
    from mgspec.train import prepare, train, trainer

    optuna = require("optuna")
    # With the journal in the study's directory, recorded relative to it: a copied or moved
    # directory keeps its trials. A shared database's trials live under the --out of whichever
    # process trained them, so those are recorded in full.
    recorded = trial.user_attrs.get("run_dir") or f"trials/{trial.number}-seed{seed}"
    if job.storage is not None and not trial.user_attrs.get("run_dir"):
        recorded = str(Path(job.out) / recorded)
    run_dir = Path(job.out) / recorded  # a study made before kept absolute paths: they stay as they are
    trial.set_user_attr("run_dir", recorded)
    trial.set_user_attr("owner", stores.owner())
    trial.set_user_attr("heartbeat", time.time())
    beat = _Heartbeat(handle, trial)
    setting = ", ".join(f"{p}={value_text(v)}" for p, v in params.items())
    log(f"trial {trial.number}: {setting}, seed {seed} in {run_dir}")
    try:
        val_split = stores.default_val_split(handle)
        config = points.config(study, params, seed, job.data_dir, job.device, job.threads, val_split)
        experiment = {**(study.model.experiment or {}), "study": study.name, "trial": trial.number, "params": params}
        resume = (run_dir / trainer.CONFIG).is_file()
        spec = points.spec(study, params)
        run = prepare(spec, points.overrides(params), config, run_dir, resume=resume, experiment=experiment)
        summary = train(run, progress=False, log=log)
    except Interrupted:
        beat.stop()
        trial.set_user_attr("interrupted", True)
        log(f"trial {trial.number} interrupted: a re-run continues it from its checkpoint")
        raise
    except Exception as exc:  # a diverged or failed training: recorded, and the study goes on
        beat.stop()
        reason = str(exc) if isinstance(exc, SpecError) else f"{type(exc).__name__}: {exc}"
        trial.set_user_attr("reason", reason)
        handle.tell(trial, state=optuna.trial.TrialState.FAIL)
        log(f"trial {trial.number} failed: {reason}")
        return "failed"
    beat.stop()
    trial.set_user_attr("test_acc", summary["best_test_acc"])
    trial.set_user_attr("final_test_acc", summary["final_test_acc"])
    trial.set_user_attr("val_acc", summary.get("best_val_acc"))
    trial.set_user_attr("selected_on", summary.get("selected_on", "test"))
    if job.tensorboard:
        from mgspec.study.tensorboard import write_events

        write_events(run_dir)
    # The accuracy objective is the one the epoch was selected on: validation, where the trial has a split.
    accuracy = summary.get("best_val_acc")
    accuracy = summary["best_test_acc"] if accuracy is None else accuracy
    values = {"accuracy": accuracy, "weights": summary["weights"], "macs": summary["macs"]}
    handle.tell(trial, [values[name] for name in study.objectives])
    val = summary.get("best_val_acc")
    said = f", validation {100 * val:.2f}%" if val is not None else ""
    log(f"trial {trial.number}: test accuracy {100 * summary['best_test_acc']:.2f}%{said}")
    return "complete"


class _Heartbeat:
    """Records that a trial's worker is alive, every HEARTBEAT_S seconds, in a daemon thread."""

    def __init__(self, handle, trial) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, args=(handle, trial), daemon=True)
        self.thread.start()

    def _beat(self, handle, trial) -> None:
        while not self.stopped.wait(stores.HEARTBEAT_S):
            try:
                handle._storage.set_trial_user_attr(trial._trial_id, "heartbeat", time.time())
            except Exception:  # the trial finished meanwhile, or the storage is briefly away
                return

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
