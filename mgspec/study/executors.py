"""Where a study's workers run: processes on this machine, or a Slurm job array through submitit.

Local: ``--jobs N`` starts N worker processes that share the study's storage; the machine's
cores are split between them (each trial trains with ``cores // N`` threads), and on CUDA
worker i trains on device ``i mod (number of GPUs)``. SIGTERM or Ctrl-C reaches every worker,
which leaves its trial to be continued by the next run.

Slurm: the workers are the tasks of one job array (``executor.map_array``), each a
:class:`SlurmWorker` (submitit's ``Checkpointable``: a job preempted or out of time is requeued
and continues where the study stands). ``study run`` waits for the array and reports; a task
that leaves the queue without a result (``scancel``) counts as not finished, also on clusters
without accounting (``sacct``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from mgspec.errors import Location, SpecError
from mgspec.runs import atomic_write
from mgspec.study import require
from mgspec.study.claims import slurm_job_alive
from mgspec.study.worker import Interrupted, Job, as_json, work

#: Exit status of a study interrupted by a signal (as for any command stopped by Ctrl-C).
INTERRUPTED = 130


def _devices(device: str, jobs: int) -> list[str]:
    """The device of each worker: ``cuda`` (or ``auto`` where CUDA is available) one trial per GPU."""
    if device == "auto" and jobs > 1:
        from mgspec.train.distributed import resolve_device

        device = "cuda" if resolve_device("auto") == "cuda" else "auto"
    if device != "cuda" or jobs == 1:
        return [device] * jobs
    import torch

    count = max(torch.cuda.device_count(), 1)
    return [f"cuda:{i % count}" for i in range(jobs)]


def plan(job: Job, jobs: int, cores: int) -> list[Job]:
    """One job per worker: its number, device and threads."""
    threads = job.threads or max(1, cores // jobs)
    return [replace(job, worker=i, device=d, threads=threads) for i, d in enumerate(_devices(job.device, jobs))]


def _ignore_ctrl_c() -> None:
    """In a worker before it runs Python: Ctrl-C (the terminal's SIGINT to the whole group) is
    ignored until the worker's own handler is in place; this process forwards it as SIGTERM.
    Without it, a Ctrl-C while a worker imports shows a KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_local(job: Job, jobs: int, cores: int, log=print) -> int:
    """Run ``jobs`` workers here; 0 when they all finished, :data:`INTERRUPTED` after a signal."""
    workers = plan(job, jobs, cores)
    if jobs == 1:
        try:
            work(workers[0], log)
        except Interrupted:
            return INTERRUPTED
        return 0
    folder = Path(job.out) / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    stopped = []

    def forward(signum, frame):
        stopped.append(signum)
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}  # before any worker starts
    try:
        for w in workers:
            if stopped:
                break
            path = folder / f"worker-{w.worker}.json"
            text = as_json(w)
            atomic_write(path, lambda tmp, text=text: tmp.write_text(text))
            command = [sys.executable, "-m", "mgspec.study.worker", str(path)]
            processes.append(subprocess.Popen(command, preexec_fn=_ignore_ctrl_c))
        if stopped:  # the signal came while a worker was starting, before it was in the list
            forward(stopped[0], None)
        codes = [p.wait() for p in processes]
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if stopped or any(c in (143, -signal.SIGTERM) for c in codes):
        return INTERRUPTED
    for number, code in enumerate(codes):
        if code < 0:  # killed (out of memory, kill -9): its trial is continued by the next run
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            log(f"worker {number} was killed ({name}): its trial continues when the study runs again")
    return 2 if 2 in codes else (0 if all(c == 0 for c in codes) else 1)


class SlurmWorker:
    """A worker as a Slurm job; submitit requeues it when it is preempted or runs out of time.

    Slurm warns a job before its time limit (and a preempted one) with submitit's signal
    (SIGUSR2 by default). The worker stops on it as on SIGTERM, its trial marked interrupted,
    and only then lets submitit's handler requeue the task (which then continues the trial from
    its checkpoint) or, when the task was requeued too often, end it with submitit's error; the
    trial then waits for the next ``study run``. SIGTERM (``scancel``) stops the task for good.
    """

    def __call__(self, job: Job) -> dict:
        requeue = _requeue_signal()
        try:
            return work(job, signals=(signal.SIGTERM, signal.SIGINT, *([requeue] if requeue else [])))
        except Interrupted as stopped:
            handler = signal.getsignal(requeue) if requeue is not None and stopped.signum == requeue else None
            if callable(handler):
                handler(requeue, None)  # submitit's: checkpoint, requeue, exit (restored by work)
            raise

    def checkpoint(self, job: Job):
        submitit = require("submitit")
        return submitit.helpers.DelayedSubmission(type(self)(), job)


def _requeue_signal() -> int | None:
    """The signal submitit requeues this task on (its handler is installed), or None outside submitit."""
    for signum in (signal.SIGUSR2, signal.SIGUSR1):
        owner = getattr(signal.getsignal(signum), "__self__", None)
        if type(owner).__module__.startswith("submitit."):
            return signum
    return None


def slurm_parameters(slurm, partition: str | None, time_min: int | None, gpus: int | None) -> dict:
    """submitit's parameters from the study file's ``slurm:`` section and the ``--slurm-*`` options."""
    params = {
        "slurm_partition": partition or (slurm.partition if slurm else None),
        "timeout_min": time_min or (slurm.time if slurm else 60),
        "gpus_per_node": gpus if gpus is not None else (slurm.gpus if slurm else 0),
    }
    if slurm and slurm.cpus:
        params["cpus_per_task"] = slurm.cpus
    if slurm and slurm.mem_gb:
        params["mem_gb"] = slurm.mem_gb
    return {k: v for k, v in params.items() if v is not None}


def check_slurm() -> None:
    """Refuse ``--executor slurm`` before anything is written where Slurm cannot take a job: no
    ``sbatch`` here, or a controller that does not answer (``scontrol ping``)."""
    where = Location("--executor slurm")
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        raise SpecError("Slurm's commands (sbatch, scontrol) are not on this machine's PATH", where,
                        hint="run the study on a Slurm login node, or use --executor local")  # fmt: skip
    try:
        done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpecError(f"scontrol ping failed: {exc}", where, hint="is the Slurm controller up?") from None
    if done.returncode != 0:
        errors, output = done.stderr.strip().splitlines(), done.stdout.strip().splitlines()
        said = errors[-1] if errors else output[0] if output else f"exit status {done.returncode}"  # its fatal, or DOWN
        raise SpecError(f"Slurm does not answer (scontrol ping: {said})", where, hint="is the Slurm controller up?")


def run_slurm(job: Job, jobs: int, parameters: dict, name: str, log=print) -> int:
    """Submit ``jobs`` workers as one Slurm job array and wait for them; 1 if any job did not finish."""
    submitit = require("submitit")
    executor = submitit.AutoExecutor(folder=str(Path(job.out) / "slurm" / "%j"), cluster="slurm")
    executor.update_parameters(name=name, slurm_array_parallelism=jobs, **parameters)
    workers = [replace(job, worker=i) for i in range(jobs)]
    try:
        submitted = executor.map_array(SlurmWorker(), workers)
    except (submitit.core.utils.FailedJobError, OSError) as exc:  # sbatch refused it (a partition, a limit)
        said = str(exc).strip().splitlines()
        raise SpecError(
            f"sbatch refused the job array: {said[-1] if said else type(exc).__name__}",
            Location("--executor slurm"),
            hint="check --slurm-partition, --slurm-time and --slurm-gpus; a re-run submits the study's trials again",
        ) from None
    log(f"submitted Slurm job array {submitted[0].job_id.split('_')[0]} ({jobs} tasks); logs in {job.out}/slurm")
    status = 0
    for task in submitted:
        try:
            _wait(task)
            task.result()
        except Exception as exc:  # cancelled, killed, or failed on the node
            first = str(exc).strip().splitlines()
            log(f"Slurm job {task.job_id} did not finish: {first[0] if first else type(exc).__name__}")
            status = 1
    return status


def _wait(task, poll_s: float = 5.0) -> None:
    """Until a Slurm task has finished; raises when it left the queue without a result.

    submitit learns a job's state from ``sacct``, which clusters without accounting lack; a job
    cancelled there would be waited for forever, so the queue (``squeue``) is asked as well.
    """
    while not task.done():
        if slurm_job_alive(task.job_id) is False and not task.done():
            raise RuntimeError("it left the queue without a result (cancelled or killed)")
        time.sleep(poll_s)
