"""``mgspec train`` and ``mgspec evaluate`` as library functions: the options as given, resolved.

A new run takes its spec, dataset and recipe from the options; a resumed run (``--resume RUN``)
from its config.json, with the options given checked against it; ``evaluate`` takes them from a
run directory, a model.safetensors file's metadata, or a spec and a checkpoint. The commands
parse their options, call :func:`train_from_options` or :func:`evaluate_target` and print.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as torch_dist

import mgspec
from mgspec import registry, runs
from mgspec.run_options import (
    DEFAULT_VAL_SPLIT,
    check_same_spec,
    need,
    spec_of_run,
    train_options,
    warn_if_oversubscribed,
)
from mgspec.train import artifacts, data, launch
from mgspec.train.evaluation import evaluate
from mgspec.train.rundir import finished_epochs, read_run


@dataclass
class TrainOptions:
    """``mgspec train``'s options as given; None means not given (the default, or the resumed run's)."""

    spec: Path | None = None
    dataset: str | None = None
    data_dir: Path | None = None
    set_: list[str] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    seed: int | None = None
    seeds: int | None = None
    device: str | None = None
    workers: int | None = None
    compile_: bool | None = None
    channels_last: bool | None = None
    threads: int | None = None
    amp: bool | None = None
    amp_dtype: str | None = None
    sync_bn: bool | None = None
    cuda_graphs: bool | None = None
    kernels: bool = True
    val_split: float | None = None
    download: bool = False
    out: Path | None = None
    resume: Path | None = None
    quiet: bool = False


def train_from_options(
    o: TrainOptions, open_spec: Callable[[Path], object] = registry.resolve, log: Callable[[str], None] = print
) -> launch.Outcome | None:
    """Train (or resume) the run the options name, every seed of it; the outcome on the main
    process, None on the others. ``open_spec`` opens a given spec path (the CLI reads ``-`` from
    stdin); Ctrl-C and SIGTERM raise :class:`mgspec.train.launch.Interrupted`."""
    from mgspec import kernels as cpu_kernels

    cpu_kernels.set_enabled(o.kernels and cpu_kernels.enabled())  # same function either way; only the speed differs
    stored, dataset, data_dir, source, overrides, val_split = _inputs(o, open_spec)
    data_dir = data_dir or Path("data")
    config, explicit = train_options(
        dataset, data_dir, o.epochs, o.batch_size, o.lr, o.weight_decay, o.seed, o.device, o.workers, o.compile_,
        o.channels_last, o.threads, o.amp, o.amp_dtype, o.sync_bn, o.cuda_graphs, val_split,
    )  # fmt: skip
    main_process = launch.main_process()
    _fetch(o.download, dataset, data_dir, config.device, main_process)
    data.check(dataset, data_dir)
    spec_name = mgspec.load_spec(source, overrides)[0].name
    directory = o.resume or o.out or Path("runs") / f"{spec_name}-{dataset}"
    seed, seeds = _seeds(o, stored, config.seed)
    run_dirs = runs.seed_dirs(directory, seed, seeds)
    # Resuming a run that has every epoch already is an error (checked in prepare, after the spec and recipe).
    nothing_left = o.resume is not None and all(
        finished_epochs(d) >= (o.epochs or stored["config"]["epochs"]) for d in run_dirs.values()
    )

    def started_run(run) -> None:  # once the run is known to start: user errors come first
        if main_process and run.adapted:
            log(f"fitted to {dataset}: --set " + " --set ".join(run.adapted))
        if main_process:
            warn_if_oversubscribed(config.threads, config.device)

    outcome = launch.train_seeds(
        source, overrides, dataclasses.replace(config, seed=seed), directory, seeds=seeds,
        resume=o.resume is not None, explicit=explicit, require_epochs_left=nothing_left, progress=not o.quiet,
        started=started_run,
    )  # fmt: skip
    return outcome if main_process else None


def _inputs(o: TrainOptions, open_spec: Callable[[Path], object]):
    """``(the resumed run's config.json or None, dataset, data dir or None, spec, overrides, --val-split)``."""
    if o.resume is None:
        dataset = need(o.dataset, "--dataset", "(or --resume RUN, which knows it)")
        need(o.spec, "SPEC", "(or --resume RUN, which knows it)")
        val_split = DEFAULT_VAL_SPLIT if o.val_split is None else o.val_split
        return None, dataset, o.data_dir, open_spec(o.spec), list(o.set_ or []), val_split
    resume = o.resume
    if o.out is not None and resume != o.out:
        raise mgspec.SpecError("--out and --resume name different runs", hint="--resume RUN alone continues RUN")
    stored = runs.read(resume).config if (resume / runs.CONFIG).exists() else read_run(resume)
    if stored is None:
        raise mgspec.SpecError(
            "not a run directory (no config.json)", mgspec.Location(str(resume)), hint="check --resume"
        )
    if o.dataset is not None and o.dataset != stored["config"]["dataset"]:
        raise mgspec.SpecError(
            f"--dataset {o.dataset}: the run trains on {stored['config']['dataset']}",
            mgspec.Location(str(resume)),
            hint="leave out --dataset: the run's own is used",
        )
    data_dir = o.data_dir or Path(stored["config"]["data_dir"])
    source, overrides = spec_of_run(stored, o.spec, o.set_, resume, open_spec)
    return stored, stored["config"]["dataset"], data_dir, source, overrides, o.val_split


def _fetch(download: bool, dataset: str, data_dir: Path, device: str, main_process: bool) -> None:
    """With ``--download``, fetch the dataset on rank 0 while the other ranks wait for it."""
    if not download:
        return
    if main_process:
        from mgspec.train.download import download as fetch

        fetch(dataset, data_dir)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # the other ranks wait for rank 0's download
        from mgspec.train.distributed import init_distributed

        init_distributed(device)
        torch_dist.barrier()


def _seeds(o: TrainOptions, stored: dict | None, default_seed: int) -> tuple[int, int]:
    """``(first seed, seeds)``: the options', else a resumed run's (its ``seed-*`` runs), else 1 from the recipe's."""
    seed, seeds = o.seed, o.seeds
    if o.resume is not None:
        started = runs.started_seeds(o.resume)
        if seeds is None and seed is None and started and not (o.resume / runs.CONFIG).exists():
            seed, seeds = started[0], len(started)
        if seed is None:
            seed = stored["config"]["seed"]
    seeds = seeds or 1
    return (default_seed if seed is None else seed), seeds


def evaluate_target(
    spec_or_run: Path,
    checkpoint: Path | None = None,
    *,
    dataset: str | None = None,
    data_dir: Path | None = None,
    set_: list[str] | None = None,
    batch_size: int = 256,
    device: str = "auto",
    threads: int | None = None,
    split: str = "test",
    open_spec: Callable[[Path], object] = registry.resolve,
) -> dict:
    """``mgspec evaluate``: loss and accuracy (:func:`mgspec.train.evaluate`) of a run directory, a
    model.safetensors file, or a spec and ``checkpoint``; the spec, overrides and dataset come from
    the run or the file unless given (a given spec must be the run's)."""
    from mgspec.train.recipe import available_cores, check_device, default_threads

    spec, target = (None, spec_or_run) if checkpoint is None else (spec_or_run, checkpoint)
    stored = read_run(target)
    if stored is None and spec is None and target.suffix == artifacts.SUFFIX:  # a weights file says its spec
        (source, overrides), dataset = (
            artifacts.stored_spec(target),
            dataset or artifacts.describe_file(target)["dataset"],
        )
    else:
        source, overrides = spec_of_run(stored, spec, set_, target, open_spec)
    if stored is not None:
        check_same_spec(stored, source, overrides, target, "checkpoint does not fit the spec")
        dataset = dataset or stored["config"]["dataset"]
        data_dir = data_dir or Path(stored["config"]["data_dir"])
    dataset = need(dataset, "--dataset", "for a checkpoint outside a run directory")
    threads = threads or default_threads()
    if threads > available_cores():
        raise mgspec.SpecError(f"--threads {threads}: this process may use {available_cores()} cores")
    check_device(device)  # user errors before the warning
    from mgspec.train.distributed import resolve_device

    device = resolve_device(device)
    warn_if_oversubscribed(threads, device)
    return evaluate(
        source, overrides, target, dataset, data_dir or Path("data"),
        batch_size=batch_size, device=device, split=split, threads=threads,
    )  # fmt: skip
