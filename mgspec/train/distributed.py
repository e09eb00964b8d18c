"""Processes and devices: one process, or one rank per device under torchrun (one or many nodes).

- **Device.** ``--device auto`` is CUDA where there is one, else the CPU. Under torchrun
  (``WORLD_SIZE > 1``) a CUDA run puts each rank on ``cuda:$LOCAL_RANK`` (its GPU on its own
  node) and makes it the current device before NCCL starts; a CPU run uses gloo.
- **Reductions** (:meth:`Dist.sum`) run on a tensor on the run's device: NCCL reduces CUDA
  tensors only, gloo CPU ones.
- **Shards.** Every rank trains on ``DistributedSampler``'s shard of each epoch: the epoch's
  permutation (from ``(seed, epoch)``, the same for any world size) padded to a multiple of the
  world size, rank ``r`` taking positions ``r, r + W, r + 2W, ...``; batch ``i`` of rank ``r``
  is the ``i``-th slice of ``batch_size / W`` of that shard. Together the ranks' batch ``i``
  holds exactly the images of a single process's batch ``i`` at the same global batch (when
  the world size divides the training set). Test images are split into contiguous shards.
- **World size** and the per-rank batch are recorded in ``config.json`` and ``summary.json``; a
  run resumes only under the world size it started with (augmentation streams are per rank and
  BatchNorm statistics are per rank, so another world size would not continue the run exactly).
- **SyncBatchNorm** (``--sync-bn``): BatchNorm layers normalise with the statistics of the
  global batch (CUDA only; torch's SyncBatchNorm has no CPU implementation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from mgspec.errors import Location, SpecError


@dataclass
class Dist:
    """This process's place in the run: its rank, the world size and the device reductions use."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float] | torch.Tensor) -> list[float]:
        """``values`` summed over all ranks (float64, reduced on this run's device)."""
        t = torch.as_tensor(values, dtype=torch.float64).to(self.device)
        if self.world > 1:
            dist.all_reduce(t)
        return t.tolist()


def local_rank() -> int:
    """This process's rank on its node (torchrun's ``LOCAL_RANK``; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str) -> str:
    """``auto`` as ``cuda`` where CUDA is available, else ``cpu``; other names unchanged."""
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def rank_device(name: str, world: int) -> str:
    """The device of this rank: under torchrun, CUDA ranks use ``cuda:$LOCAL_RANK`` (one GPU each)."""
    name = resolve_device(name)
    if world > 1 and name.startswith("cuda"):
        return f"cuda:{local_rank()}"
    return name


def init_distributed(device: str) -> Dist:
    """Join the torchrun process group when launched by it (WORLD_SIZE > 1).

    A CUDA rank first makes ``cuda:$LOCAL_RANK`` its current device, so that NCCL and every
    collective use the rank's own GPU (on every node, not only the first).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    name = rank_device(device, world)
    if world == 1:
        return Dist(device=torch.device(name))
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if local_rank() >= count:
            raise SpecError(
                f"rank {os.environ.get('RANK', '?')} has LOCAL_RANK {local_rank()}, "
                f"but this node has {count} CUDA devices",
                hint="start at most one process per GPU on each node (torchrun --nproc_per_node)",
            )
        torch.cuda.set_device(torch.device(name))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if name.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), torch.device(name))


def finish_distributed(ok: bool = True) -> None:
    """Leave the process group cleanly (gloo aborts the process if it is still alive at exit).

    After a failure there is no barrier: the other ranks may never reach it.
    """
    if dist.is_available() and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def record(dist_: Dist, batch_size: int, sync_bn: bool) -> dict:
    """What ``config.json`` and ``summary.json`` say about the processes of a run."""
    return {
        "world_size": dist_.world,
        "per_rank_batch": batch_size // dist_.world,
        "global_batch": batch_size,
        "sync_bn": sync_bn,
    }


def check_world(stored: dict | None, dist_: Dist, where: str) -> None:
    """Refuse to resume a run under another world size than it started with (runs that recorded it)."""
    started = (stored or {}).get("distributed", {}).get("world_size")
    if started is None or started == dist_.world:
        return
    launch = "one process" if started == 1 else f"torchrun with {started} processes in all"
    raise SpecError(
        f"the run was trained by {started} process{'es' if started > 1 else ''}, not {dist_.world}: "
        "each rank's augmentation and BatchNorm statistics depend on the world size, "
        "so it would not continue the same run",
        Location(where),
        hint=f"resume it with {launch}",
    )


def check_sync_bn(device: torch.device) -> None:
    """``--sync-bn`` runs on CUDA only: torch's SyncBatchNorm has no CPU implementation."""
    if device.type != "cuda":
        raise SpecError(
            "--sync-bn needs CUDA: torch's SyncBatchNorm has no CPU implementation",
            hint="leave out --sync-bn on CPU (each rank then normalises with its own batch)",
        )


def convert_sync_batchnorm(model: nn.Module) -> int:
    """Turn every ``BatchNorm2d`` of ``model`` into a ``SyncBatchNorm`` in place; returns how many.

    The modules keep their identity (the runtime model's program holds them, so torch's
    ``convert_sync_batchnorm``, which builds new modules, would not reach the forward pass),
    their parameters, buffers and state_dict keys. Out of a process group a SyncBatchNorm
    computes what BatchNorm does; inside one it normalises with the statistics of all ranks.
    """
    converted = 0
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = nn.SyncBatchNorm
            module.process_group = None
            converted += 1
    return converted


def gather_cuda_rng(dist_: Dist) -> list[torch.Tensor] | None:
    """Every rank's CUDA generator state (rank order), for rank 0's checkpoint; None on CPU."""
    if dist_.device.type != "cuda":
        return None
    state = torch.cuda.get_rng_state(dist_.device)
    if dist_.world == 1:
        return [state]
    states = [torch.empty_like(state, device=dist_.device) for _ in range(dist_.world)]
    dist.all_gather(states, state.to(dist_.device))
    return [s.cpu() for s in states]


def restore_cuda_rng(states: list[torch.Tensor] | None, dist_: Dist) -> None:
    """Set this rank's CUDA generator from a checkpoint's states (when it has one for this rank)."""
    if dist_.device.type == "cuda" and states and len(states) == dist_.world:
        torch.cuda.set_rng_state(states[dist_.rank].cpu(), dist_.device)
