"""The input path for accelerators: a dataset resident on the device, batches made there.

:class:`DeviceSplit` copies a split to the device once, as uint8 (CIFAR-10's 50,000 training
images are 150 MB). :class:`DeviceBatches` is one epoch of it: the same batches, the same
crops and flips and the same normalisation as :class:`~mgspec.train.batches.EpochBatches`
(the order from ``DistributedSampler`` seeded with ``(seed, epoch)``, the draws of batch ``i``
from a generator seeded with ``(seed, epoch, rank, i)``), with the draws of the whole epoch
made up front and copied to the device once; gathering, cropping, flipping and normalising run
there as batched ops. On the CPU it gives exactly the tensors of ``EpochBatches`` (tested).

Where the data stays on the host (:func:`host_batches`, the CPU path and any device without
room for the dataset), batches come from a ``DataLoader``, in pinned memory when they go to CUDA.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from mgspec.train.batches import EpochBatches, Normalize, _seed, crop_flip, crop_flip_params
from mgspec.train.data import DatasetInfo, Split

#: Padding of the random crop (CIFAR's 4 pixels).
PADDING = 4


class DeviceSplit:
    """A split's images (uint8) and labels, held on ``device``."""

    def __init__(self, split: Split, device: torch.device) -> None:
        self.split = split
        self.images = split.images.to(device, non_blocking=False)
        self.labels = split.labels.to(device)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.labels)


class DeviceBatches:
    """One epoch's batches of a :class:`DeviceSplit`, as float images and labels on its device."""

    def __init__(
        self,
        data: DeviceSplit,
        info: DatasetInfo,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
        max_batches: int | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        plan = EpochBatches(data.split, info, batch_size, train=train, seed=seed, epoch=epoch, rank=rank, world=world)
        order = plan.batches[:max_batches] if max_batches is not None else plan.batches
        self.data, self.memory_format = data, memory_format
        self.sizes = [len(b) for b in order]
        device = data.device
        self.index = torch.cat(order).to(device) if order else torch.empty(0, dtype=torch.long, device=device)
        self.normalize = Normalize(info, device)
        self.draws = None
        if plan.augment and order:
            draws = [crop_flip_params(n, PADDING, _generator(seed, epoch, rank, i)) for i, n in enumerate(self.sizes)]
            self.draws = [torch.cat(column).to(device) for column in zip(*draws, strict=True)]

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start = 0
        for n in self.sizes:
            index = self.index[start : start + n]
            images = self.data.images.index_select(0, index)
            if self.draws is not None:
                dy, dx, flip = (d[start : start + n] for d in self.draws)
                images = crop_flip(images, PADDING, dy, dx, flip)
            images = self.normalize(images).contiguous(memory_format=self.memory_format)
            yield images, self.data.labels.index_select(0, index)
            start += n


def _generator(seed: int, epoch: int, rank: int, i: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(seed, epoch, rank, i))


def host_batches(
    batches: EpochBatches, workers: int, device: torch.device, memory_format: torch.memory_format
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """``EpochBatches`` from a ``DataLoader`` (pinned for CUDA), moved to ``device`` as they come."""
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda"
    )
    for images, labels in loader:
        yield (
            images.to(device, memory_format=memory_format, non_blocking=True),
            labels.to(device, non_blocking=True),
        )


def fits_on_device(split: Split, device: torch.device, share: float = 0.25) -> bool:
    """Whether a split's uint8 images take at most ``share`` of the device's free memory (CUDA only)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return split.images.numel() * split.images.element_size() <= share * free
