"""Tiny datasets written by the tests in the official on-disk formats.

Images carry a learnable signal: the class sets the mean brightness of each channel, so a
tiny network beats chance within an epoch or two.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

TINY_SPEC = """\
name: tiny_mgiad
input: {channels: 3, size: 32}
classes: 10
resolution_grid:
  block: mgnet
  levels:
    - {channels: 8, steps: 1}
    - {channels: 16, steps: 1}
channel_grid: {group_size: 2, coarsest: 4}
"""


def images_and_labels(n: int, channels: int, size: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    base = (labels[:, None, None, None] * 255 // max(classes - 1, 1)).astype(np.int64)
    noise = rng.integers(-40, 41, (n, channels, size, size))
    images = np.clip(base + noise, 0, 255).astype(np.uint8)
    return images, labels


def write_cifar(
    root: Path, *, train_per_batch: int = 16, test: int = 24, cifar100: bool = False, bytes_keys: bool = True
) -> Path:
    """The official 'python version' layout under ``root``; returns the dataset folder."""
    classes = 100 if cifar100 else 10
    folder = root / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    label_key = "fine_labels" if cifar100 else "labels"
    names = ["train"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)]
    batches = [(name, train_per_batch * (5 if cifar100 else 1)) for name in names] + [
        ("test" if cifar100 else "test_batch", test)
    ]
    for i, (name, n) in enumerate(batches):
        images, labels = images_and_labels(n, 3, 32, classes, seed=i)
        batch = {"data": images.reshape(n, -1), label_key: labels.tolist(), "batch_label": name}
        if cifar100:
            batch["coarse_labels"] = (labels // 5).tolist()
        if bytes_keys:
            batch = {k.encode(): v for k, v in batch.items()}
        with (folder / name).open("wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, *, train: int = 48, test: int = 24, gz: bool = True) -> Path:
    """MNIST/FashionMNIST IDX files (gzipped or raw) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", train, 0), ("t10k", test, 1)):
        images, labels = images_and_labels(n, 1, 28, 10, seed)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images[:, 0]), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder
