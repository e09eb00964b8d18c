"""Epoch batches: shuffling, augmentation and normalisation, deterministic by construction.

The order of an epoch comes from :class:`~torch.utils.data.DistributedSampler` seeded with
``(seed, epoch)`` (one process is world size 1), and the augmentation of batch ``i`` from a
generator seeded with ``(seed, epoch, rank, i)``. Nothing depends on global RNG state or on
how many loader workers run, so a resumed run sees exactly the batches an uninterrupted one
would have.
"""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DistributedSampler

from mgspec.train.data import DatasetInfo, Split


def crop_flip_params(n: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The random draws of :func:`random_crop_flip` for ``n`` images: row and column offsets, flips."""
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return dy, dx, flip


def crop_flip(images: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor):
    """Per image ``k``: the ``H x W`` crop at ``(dy[k], dx[k])`` of the zero-padded image, mirrored
    where ``flip[k]``; batched gathers on the images' device."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    rows = dy[:, None] + torch.arange(h, device=images.device)  # (n, h)
    cropped = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    cols = torch.arange(w, device=images.device).expand(n, w)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - cols, cols)  # crop, then mirror
    return cropped.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per image: a random ``H x W`` crop of the zero-padded image, then a flip with p = 1/2."""
    return crop_flip(images, padding, *crop_flip_params(len(images), padding, generator))


class Normalize:
    def __init__(self, info: DatasetInfo, device: torch.device | str = "cpu") -> None:
        self.mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float().div_(255) - self.mean) / self.std


def _seed(*parts: int) -> int:
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % (2**63 - 1)
    return value


class EpochBatches(torch.utils.data.Dataset):
    """Batch ``i`` of one epoch as ``(float images, labels)``; a map-style dataset of batches."""

    def __init__(
        self,
        split: Split,
        info: DatasetInfo,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.split, self.train, self.seed, self.epoch, self.rank = split, train, seed, epoch, rank
        self.augment = train and info.augment
        self.normalize = Normalize(info)
        if train:
            sampler = DistributedSampler(split.labels, num_replicas=world, rank=rank, shuffle=True, seed=seed)
            sampler.set_epoch(epoch)
            self.batches = [torch.tensor(b) for b in BatchSampler(sampler, batch_size, drop_last=False)]
        else:  # every test image exactly once over all ranks: contiguous shards, no padding
            shard = torch.arange(len(split)).tensor_split(world)[rank]
            self.batches = list(shard.split(batch_size))

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.batches[i]
        images = self.split.images[index]
        if self.augment:
            generator = torch.Generator().manual_seed(_seed(self.seed, self.epoch, self.rank, i))
            images = random_crop_flip(images, 4, generator)
        return self.normalize(images), self.split.labels[index]
