"""What one process of a run trains with: its batches, its step, its loss scaler.

The data lives on a CUDA device when it fits (:class:`DeviceBatches`), else batches are made on
the host (:class:`EpochBatches`); a validation split is held out of the training set
(:mod:`mgspec.train.validation`); the step is captured in a CUDA graph where that is exact and
possible (:mod:`mgspec.train.step`). :mod:`mgspec.train.trainer` puts these together.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from mgspec.errors import SpecError
from mgspec.train import validation
from mgspec.train.batches import EpochBatches
from mgspec.train.data import DatasetInfo, Split
from mgspec.train.device_data import DeviceBatches, DeviceSplit, fits_on_device
from mgspec.train.distributed import Dist
from mgspec.train.guards import refuse_single_images
from mgspec.train.recipe import TrainConfig, uses_loss_scaling
from mgspec.train.rundir import Run, read_run
from mgspec.train.step import Step, make_step

Batches = EpochBatches | DeviceBatches


def batch_size(config: TrainConfig, dist_: Dist) -> int:
    """The batch of one process: ``--batch-size`` split evenly over the processes."""
    if config.batch_size % dist_.world:
        raise SpecError(f"--batch-size {config.batch_size} is not divisible by the {dist_.world} processes")
    return config.batch_size // dist_.world


def hold_out(run: Run, data: Split, info: DatasetInfo, per_rank: int, dist_: Dist):
    """``(training split, validation batches or None)``; records the split in config.json and refuses
    a resumed run whose split differs."""
    kept, held, record = validation.hold_out(data, run.config.val_split, run.config.seed)
    if run.checkpoint.exists():
        validation.check_resume(read_run(run.directory), record, str(run.directory))
    run.record["validation"] = record
    if held is None:
        return kept, None
    return kept, EpochBatches(held, info, per_rank, train=False, rank=dist_.rank, world=dist_.world)


def drops_single(
    run: Run, model: nn.Module, train_split: Split, info: DatasetInfo, per_rank: int, dist_: Dist, device
) -> bool:
    """Whether an epoch's last batch of one image must be dropped: only where a batch can hold one
    image, and the model has a BatchNorm that cannot train on it (see :mod:`mgspec.train.guards`)."""
    shape = (info.channels, info.size, info.size)
    shard = math.ceil(len(train_split) / dist_.world)  # images per process and epoch (the sampler pads)
    single = per_rank == 1 or shard % per_rank == 1  # only then can a batch hold one image
    return single and refuse_single_images(model, shape, device, per_rank, str(run.directory))


def data_sources(
    config: TrainConfig,
    info: DatasetInfo,
    train_split: Split,
    test_split: Split,
    device: torch.device,
    dist_: Dist,
    per_rank: int,
    drop_single: bool = False,
) -> tuple[Callable[[int], Batches], Batches]:
    """``(epoch -> training batches, test batches)``: resident on a CUDA device where the data fits
    (:class:`DeviceBatches`), else made on the host (:class:`EpochBatches`). ``drop_single`` drops an
    epoch's last batch when it holds one image (made on the host then)."""
    where = dict(rank=dist_.rank, world=dist_.world)
    if not drop_single and fits_on_device(train_split, device) and fits_on_device(test_split, device, share=0.1):
        memory = torch.channels_last if config.channels_last else torch.contiguous_format
        train_data, test_data = DeviceSplit(train_split, device), DeviceSplit(test_split, device)
        test = DeviceBatches(test_data, info, per_rank, train=False, memory_format=memory, **where)

        def on_device(epoch: int) -> DeviceBatches:
            return DeviceBatches(
                train_data, info, per_rank, train=True, seed=config.seed, epoch=epoch,
                max_batches=config.max_batches, memory_format=memory, **where,
            )  # fmt: skip

        return on_device, test

    def on_host(epoch: int) -> EpochBatches:
        batches = EpochBatches(train_split, info, per_rank, train=True, seed=config.seed, epoch=epoch, **where)
        if config.max_batches is not None:  # a smoke test: the first batches of the epoch's order only
            del batches.batches[config.max_batches :]
        if drop_single and len(batches.batches) > 1 and len(batches.batches[-1]) == 1:
            del batches.batches[-1]  # BatchNorm cannot train on one 1x1 map per channel
        return batches

    return on_host, EpochBatches(test_split, info, per_rank, train=False, **where)


def make_scaler(device_type: str, amp: str | None) -> torch.amp.GradScaler | None:
    """The loss scaler a run needs: one for float16 autocast on CUDA, none otherwise."""
    return torch.amp.GradScaler(device_type) if uses_loss_scaling(device_type, amp) else None


def step_record(graphs: bool, compiled: bool, on_device: bool, device: torch.device) -> dict:
    """config.json's ``step``: how the run's steps are made."""
    return {
        "cuda_graphs": graphs,
        "partial_batches": "eager" if graphs else "as they come",
        "compile": compiled,
        "data_on_device": on_device,
        "tf32": device.type == "cuda",
    }


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    config: TrainConfig,
    device: torch.device,
    per_rank: int,
    info: DatasetInfo,
    graphs: bool,
    log: Callable[[str], None],
) -> Step:
    """The step of a run: captured in a CUDA graph at the per-rank batch shape when ``graphs``,
    else eager; a capture that fails falls back to eager steps, with one line saying why."""
    amp_dtype = getattr(torch, config.amp) if config.amp else None
    model.train(True)
    if graphs:
        memory = torch.channels_last if config.channels_last else torch.contiguous_format
        images = torch.zeros(per_rank, info.channels, info.size, info.size, device=device)
        example = (images.contiguous(memory_format=memory), torch.zeros(per_rank, dtype=torch.long, device=device))
        try:
            return make_step(model, optimizer, example_batch=example, cuda_graph=True, amp_dtype=amp_dtype)
        except Exception as exc:  # noqa: BLE001 - any capture failure leaves the eager step, which is exact
            log(f"warning: CUDA graph capture failed ({str(exc).splitlines()[0][:200]}); training eagerly")
            optimizer.zero_grad(set_to_none=True)
    return make_step(model, optimizer, amp_dtype=amp_dtype, scaler=scaler)


def diverged(loss: float, classes: int) -> bool:
    """Non-finite, or a thousand times the loss of guessing (ln classes): no run recovers from that."""
    return not math.isfinite(loss) or loss > 1000 * math.log(max(classes, 2))
