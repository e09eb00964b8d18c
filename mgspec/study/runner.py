"""Run a study file to its end: validate every point, open the storage, train with an executor.

One code path for ``mgspec study run``, and for the studies ``sweep --train`` and ``reproduce``
write (:mod:`mgspec.study.inline`): every front-end gains ``--jobs``, the Slurm executor,
resume on re-run and failure tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mgspec.errors import Location, SpecError


@dataclass(frozen=True)
class Options:
    """How a study runs (not what it computes)."""

    jobs: int | None = None
    executor: str = "local"
    storage: str | None = None
    data_dir: Path = Path("data")
    device: str = "auto"
    threads: int | None = None
    slurm_partition: str | None = None
    slurm_time: int | None = None
    slurm_gpus: int | None = None
    tensorboard: bool = False
    retry_failed: bool = False


DEFAULT = Options()


def check(study, options: Options) -> dict:
    """Everything that can be refused before anything is written: options, data, every point of ``study``."""
    from mgspec.study import points, require
    from mgspec.train import data
    from mgspec.train.recipe import check_device

    require("optuna")
    if options.executor not in ("local", "slurm"):
        raise SpecError(f"unknown executor {options.executor!r}", Location("--executor"), hint="use local or slurm")
    check_device(options.device)
    if options.executor == "local":  # a Slurm job's device is the node's, not this machine's
        from mgspec.train.rundir import training_device

        training_device(options.device)
    for split in ("train", "test"):  # read once here: a broken file is refused, not failed in every trial
        data.load(study.model.dataset, options.data_dir, split)
    checked = points.validate(study, options.data_dir, options.device)  # every point, before anything trains
    if options.tensorboard:
        from mgspec.study.tensorboard import check_available

        check_available()
    if options.executor == "slurm":
        from mgspec.study.executors import check_slurm

        require("submitit")
        check_slurm()
    return checked


def open_handle(study, out: Path, options: Options):
    """The study in its storage, created or continued, and that storage: a bad storage or a changed
    study is refused here."""
    from mgspec.study import storage as stores
    from mgspec.study.draws import check_drawn

    parallel = (options.jobs or 1) > 1 or options.executor == "slurm"
    storage = stores.open_storage(options.storage, out, parallel)
    _refuse_another(study, out, storage)
    handle = stores.open_study(study, storage, out)
    check_drawn(study, handle)
    return handle, storage


def _refuse_another(study, out: Path, storage) -> None:
    """A study directory holds one study: a new study in a directory another's journal or run
    directories are in is refused (its ``trials/0-seed0`` would be taken for the other's). A study
    that is there already continues (a directory two studies shared before this rule too)."""
    import json

    from optuna import get_all_study_summaries
    from optuna.storages import JournalStorage

    there = set()
    if isinstance(storage, JournalStorage):
        there = {s.study_name for s in get_all_study_summaries(storage, include_best_trial=False)}
    for config in sorted((out / "trials").glob("*/config.json")):
        if study.name in there:  # its own directory: no need to read every other run's config
            return
        try:
            there.add((json.loads(config.read_text()).get("experiment") or {}).get("study"))
        except (OSError, ValueError, AttributeError):
            pass
    there.discard(None)
    if study.name in there or not there:
        return
    others = ", ".join(map(repr, sorted(there)[:3])) + (", ..." if len(there) > 3 else "")
    raise SpecError(
        f"this directory holds the study {others}; a study directory holds one study",
        Location(str(out)),
        hint=f"give the study {study.name!r} another --out",
    )


def run(
    study_file: Path, out: Path | None, options: Options, log=print, checked: dict | None = None
) -> tuple[dict, int, Path]:
    """Train the study's points and seeds; the report, the executor's exit code and the out directory.

    ``checked`` (from :func:`check`) says the study was checked already.
    """
    from mgspec.study import claims, executors, load_study, locks
    from mgspec.study import report as reporting
    from mgspec.study import storage as stores
    from mgspec.study.draws import complete_seeds, exhausted, left_to_train
    from mgspec.study.worker import Job
    from mgspec.train.recipe import available_cores

    study = load_study(study_file)
    checked = check(study, options) if checked is None else checked
    out = out or stores.default_out(Path(study_file), study.name)
    jobs, url = options.jobs or 1, options.storage
    handle, storage = open_handle(study, out, options)
    with locks.locked(storage, out, study.name):  # before counting the trials left: repaired ones count
        claims.take_over(handle, log)
        complete_seeds(study, handle, log)
        if options.retry_failed:
            claims.retry_failed(handle, log)
    where = stores.redact(url) if url else out / "journal.log"
    log(f"study {study.name}: {len(checked)} points checked; storage {where}")
    left = left_to_train(study, handle)
    if jobs > max(left, 1):  # no worker without a trial to train (--jobs 64 on 4 trials)
        plural = "s" * (left > 1)
        log("no trial left to train" if left == 0 else f"{left} trial{plural} to train: {left} worker{plural}")
        jobs = max(left, 1)
    job = Job(
        str(Path(study_file).resolve()),
        str(out.resolve()),
        url,
        str(Path(options.data_dir).resolve()),
        options.device,
        options.threads,
        options.tensorboard,
    )
    if options.executor == "slurm":
        params = executors.slurm_parameters(
            study.model.slurm, options.slurm_partition, options.slurm_time, options.slurm_gpus
        )
        code = executors.run_slurm(job, jobs, params, study.name, log)
    else:
        code = executors.run_local(job, jobs, available_cores(), log)
    if code == 0:
        claims.wait_for_others(handle, log)
        if (why := exhausted(study, handle)) is not None:
            log(why)
            code = 1
    return reporting.build(study.name, study.objectives, handle, out), code, out
