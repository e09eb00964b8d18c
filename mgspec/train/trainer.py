"""Training, evaluation and resumption; one process or DistributedDataParallel under torchrun.

A run directory holds everything needed to continue or audit a run:

- ``config.json``  the recipe, the spec text, the overrides and the spec's counts (what
  ``train --resume RUN`` and ``evaluate RUN`` read, so the spec need not be given again)
- ``metrics.jsonl`` one JSON object per epoch (train/test loss and accuracy, lr, time)
- ``checkpoint.pt`` model, optimizer, scheduler, RNG state and epoch, written atomically
  after every epoch (a killed run loses at most the epoch in progress)
- ``model.safetensors`` the weights alone, with metadata that says what they are
  (:mod:`mgspec.train.artifacts`), written after every epoch too
- ``summary.json``  weights, MACs, best/final accuracy, wall time, once the run ends

Checkpoints hold only tensors and plain containers and are read with ``weights_only=True``.
Under torchrun (``WORLD_SIZE > 1``) every rank trains on its shard of each epoch (the
sampler is distributed, see :mod:`mgspec.train.distributed`), metrics are summed over ranks,
and only rank 0 writes. On CUDA the data lives on the device (:mod:`mgspec.train.device_data`)
and the step may be a CUDA graph (:mod:`mgspec.train.step`).

This module is the epoch loop. A run directory is prepared by :mod:`mgspec.train.rundir`, its
batches and step are made by :mod:`mgspec.train.session`, one pass is
:func:`mgspec.train.evaluation.epoch_pass`, and the checkpoint, metrics and summary are written
by :mod:`mgspec.train.checkpoint`; their public names are importable from here as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

import mgspec
from mgspec import runs
from mgspec.errors import Location, RunError, SpecError
from mgspec.train import artifacts, checkpoint, distributed, validation
from mgspec.train.data import DatasetInfo, dataset_info, load
from mgspec.train.device_data import DeviceBatches
from mgspec.train.distributed import Dist as Dist
from mgspec.train.distributed import finish_distributed as finish_distributed  # the CLI leaves runs with it
from mgspec.train.distributed import init_distributed as init_distributed
from mgspec.train.evaluation import epoch_pass as _epoch_pass
from mgspec.train.evaluation import evaluate as evaluate
from mgspec.train.evaluation import load_weights as load_weights
from mgspec.train.guards import out_of_memory
from mgspec.train.memory import tune_malloc
from mgspec.train.progress import EpochProgress
from mgspec.train.recipe import TrainConfig
from mgspec.train.rundir import TRAINING_BYTES_PER_WEIGHT as TRAINING_BYTES_PER_WEIGHT
from mgspec.train.rundir import Run as Run
from mgspec.train.rundir import check_fits, training_device
from mgspec.train.rundir import finished_epochs as finished_epochs
from mgspec.train.rundir import prepare as prepare
from mgspec.train.rundir import read_run as read_run
from mgspec.train.rundir import stored_spec as stored_spec
from mgspec.train.session import (
    Batches,
    batch_size,
    data_sources,
    diverged,
    drops_single,
    hold_out,
    step_record,
    train_step,
)
from mgspec.train.session import make_scaler as make_scaler
from mgspec.train.step import Step, choose_cuda_graphs, configure_cuda, make_optimizer

CONFIG, METRICS, CHECKPOINT, SUMMARY = runs.CONFIG, runs.METRICS, runs.CHECKPOINT, runs.SUMMARY
aggregate = runs.aggregate


@dataclass
class _Session:
    """What one process of a run trains with, built once before its first epoch."""

    dist: Dist
    device: torch.device
    info: DatasetInfo
    per_rank: int
    model: nn.Module  # the bare model, whose state is saved
    epoch_batches: Callable[[int], Batches]
    test_batches: Batches
    val_batches: Batches | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    graphs: bool
    compiled: bool
    drop_single: bool
    local: nn.Module | None = None  # the model, compiled with --compile: what evaluates
    trained: nn.Module | None = None  # ``local``, in DDP under torchrun: what trains
    step: Step | None = None  # made at the first epoch trained (a resumed run may have none left)


def train(run: Run, *, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train to ``run.config.epochs`` (continuing from the checkpoint when there is one).

    The run directory is locked while training (a second process is refused). A run that fails
    before its first checkpoint (a bad device, a model too large, divergence in the first
    epoch, an interrupt) leaves nothing behind: the files and folders it created are removed,
    and nothing else.
    """
    main = int(os.environ.get("RANK", "0")) == 0
    created = run.directory
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    created = created if not created.exists() else None
    existed = {name for name in runs.RUN_FILES if (run.directory / name).exists()}
    fresh = not run.checkpoint.exists()
    try:
        if not main:
            with out_of_memory(str(run.directory)):
                return _train(run, progress, log)
        run.directory.mkdir(parents=True, exist_ok=True)
        with runs.locked(run.directory), out_of_memory(str(run.directory)):
            return _train(run, progress, log)
    except BaseException:
        if fresh and not run.checkpoint.exists() and main:
            checkpoint.remove_start(run.directory, created, existed)
        raise


def _make_model(run: Run, device: torch.device) -> nn.Module:
    """The run's model on its device, seeded by the recipe; one that does not fit is a located SpecError."""
    torch.manual_seed(run.config.seed)
    try:
        model = mgspec.create_model(run.spec_path, run.overrides).to(device)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "out of memory"
        raise SpecError(
            f"the model does not fit the memory of {device}: {reason}",
            Location(run.spec_path),
            hint="reduce width, channels or steps",
        ) from None
    if run.config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _train(run: Run, progress: bool, log: Callable[[str], None]) -> dict:
    dist_, device = _start(run.config)
    s = _session(run, dist_, device)
    start, best, elapsed = checkpoint.resume(run, s.model, s.optimizer, s.scheduler, s.scaler, dist_, device, log)
    if dist_.main:  # written only once the model, and a resumed run's checkpoint, are known to fit
        runs.write_json(run.directory / CONFIG, run.record)
        checkpoint.trim_metrics(run.directory / METRICS, start)
    if s.drop_single and dist_.main and s.per_rank > 1:
        log("each epoch's last batch holds 1 image, which BatchNorm at 1x1 cannot train on: it is skipped")
    s.local, s.trained = _wrap(s.model, s.compiled, dist_, device)
    record, best = _epochs(run, s, start, best, elapsed, progress, log)
    if record is None:  # nothing left to train: report the stored run
        metrics = runs.read_metrics(run.directory / METRICS)
        if not metrics:
            raise RunError("the run has no metrics to report", Location(str(run.directory / METRICS)))
        record = metrics[-1]
    summary = checkpoint.summary(run, record, best)
    if dist_.main:
        runs.write_json(run.directory / SUMMARY, summary)
    return summary


def _start(config: TrainConfig) -> tuple[Dist, torch.device]:
    """This process's threads, process group and device (with its CUDA settings)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    tune_malloc()
    dist_ = init_distributed(config.device)
    device = training_device(distributed.rank_device(config.device, dist_.world))
    if device.type == "cuda":
        configure_cuda(device)
    if config.sync_bn:
        distributed.check_sync_bn(device)
    return dist_, device


def _session(run: Run, dist_: Dist, device: torch.device) -> _Session:
    """Load the data, build the model, its batches, optimizer and schedule; record them in config.json."""
    config = run.config
    info = dataset_info(config.dataset)
    train_split, test_split = (
        load(config.dataset, config.data_dir, "train"),
        load(config.dataset, config.data_dir, "test"),
    )
    train_split, val_batches = hold_out(run, train_split, info, batch_size(config, dist_), dist_)
    check_fits(run.record["spec"]["weights"], device, run.spec_path)
    model = _make_model(run, device)
    if config.sync_bn:
        distributed.convert_sync_batchnorm(model)
    per_rank = batch_size(config, dist_)
    drop_single = drops_single(run, model, train_split, info, per_rank, dist_, device)
    if run.checkpoint.exists():
        distributed.check_world(read_run(run.directory), dist_, str(run.directory))
    epoch_batches, test_batches = data_sources(
        config, info, train_split, test_split, device, dist_, per_rank, drop_single
    )
    compiled = config.compile_enabled(steps=config.epochs * len(epoch_batches(0)))
    scaler = make_scaler(device.type, config.amp)
    graphs = choose_cuda_graphs(config.cuda_graphs, device, dist_.world, compiled, scaler is not None)
    run.record["distributed"] = distributed.record(dist_, config.batch_size, config.sync_bn)
    run.record["step"] = step_record(graphs, compiled, isinstance(epoch_batches(0), DeviceBatches), device)
    optimizer = make_optimizer(model, config.lr, config.momentum, config.weight_decay, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: config.lr_at(e) / config.lr)
    return _Session(
        dist_, device, info, per_rank, model, epoch_batches, test_batches, val_batches,
        optimizer, scheduler, scaler, graphs, compiled, drop_single,
    )  # fmt: skip


def _wrap(model: nn.Module, compiled: bool, dist_: Dist, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """``(the model that evaluates, the model that trains)``: compiled with ``--compile``, the second
    in DistributedDataParallel under torchrun."""
    local = model
    if compiled:
        local = torch.compile(model)
    trained = local
    if dist_.world > 1:
        # The paper's level-1 R/Pi are weights no op uses; DDP must be told not to wait for their gradients.
        unused = mgspec.count(model.graph).unused > 0
        trained = nn.parallel.DistributedDataParallel(
            trained, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )
    return local, trained


def _epochs(
    run: Run, s: _Session, start: int, best: dict | None, elapsed: float, progress: bool, log: Callable[[str], None]
) -> tuple[dict | None, dict | None]:
    """Train the epochs left, saving each on rank 0; ``(the last epoch's record or None, the best)``."""
    record = None
    with EpochProgress(progress and s.dist.main, run.config.epochs, len(s.epoch_batches(0)), start) as bar:
        for epoch in range(start, run.config.epochs):
            record, elapsed = _epoch(run, s, epoch, elapsed, bar.advance, log)
            best, improved = validation.update_best(best, record)
            cuda_rng = distributed.gather_cuda_rng(s.dist)  # a collective: every rank takes part
            if s.dist.main:
                checkpoint.save(
                    run, s.model, s.optimizer, s.scheduler, epoch + 1, elapsed, best, record, s.scaler, cuda_rng
                )
                if improved and s.val_batches is not None:  # the weights of the best epoch on validation
                    artifacts.save_run_weights(run, s.model, epoch + 1, record, name=validation.BEST_WEIGHTS)
            bar.epoch_done(record)
    return record, best


def _epoch(
    run: Run, s: _Session, epoch: int, elapsed: float, advance: Callable[[], None], log: Callable[[str], None]
) -> tuple[dict, float]:
    """Train one epoch and evaluate it: ``(its metrics record, seconds trained so far)``."""
    config = run.config
    lr = s.optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    if s.step is None:
        s.step = train_step(s.trained, s.optimizer, s.scaler, config, s.device, s.per_rank, s.info, s.graphs, log)
    train_loss, train_acc, images = _epoch_pass(
        s.trained, s.epoch_batches(epoch), config, s.device, s.dist, advance=advance, step=s.step
    )
    train_time = time.perf_counter() - t0
    s.scheduler.step()
    if s.dist.world > 1:  # evaluate rank 0's BatchNorm statistics everywhere, without DDP's
        for buffer in s.model.buffers():  # per-forward collectives (test shards may differ in length)
            dist.broadcast(buffer, 0)
    test_loss, test_acc, _ = _epoch_pass(s.local, s.test_batches, config, s.device, s.dist)
    held = _val_pass(s.local, s.val_batches, config, s.device, s.dist)
    elapsed += time.perf_counter() - t0
    _check_diverged(run, epoch, s.info.classes, train_loss, test_loss, held)
    record = {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        **held,
        "images_per_s": images / train_time,
        "elapsed_s": elapsed,
    }
    return record, elapsed


def _val_pass(model, batches, config: TrainConfig, device, dist_: Dist) -> dict:
    """``val_loss`` and ``val_acc`` of the held-out images (eval mode, like test); {} without a split."""
    if batches is None:
        return {}
    loss, accuracy, _ = _epoch_pass(model, batches, config, device, dist_)
    return {"val_loss": loss, "val_acc": accuracy}


def _check_diverged(run: Run, epoch: int, classes: int, train_loss: float, test_loss: float, held: dict) -> None:
    """A RunError when a loss of the epoch diverged; it says what was saved and how to go on."""
    losses = (train_loss, test_loss, held.get("val_loss", 0.0))
    if any(diverged(loss, classes) for loss in losses):
        # The losses are summed over ranks, so every rank stops here together.
        saved = (
            f"epoch {epoch} is saved in {run.checkpoint} (--resume {run.directory} continues it); "
            if epoch > 0
            else "no epoch was saved; "
        )
        raise RunError(
            f"training diverged in epoch {epoch + 1}: train loss {train_loss:.3g}, test loss {test_loss:.3g}",
            Location(str(run.directory)),
            hint=f"{saved}a smaller --lr trains stably",
        )
