"""Datasets in their official on-disk formats, read into memory as uint8 tensors.

- CIFAR-10 / CIFAR-100: the "python version" pickles (``data_batch_1..5``/``test_batch``,
  ``train``/``test``), each a dict with ``data`` (N x 3072 uint8, channel-planar) and
  ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100).
- MNIST / FashionMNIST: IDX files (``train-images-idx3-ubyte`` etc.), gzipped or raw.

``--data-dir`` may point at the folder holding the files, or at a parent holding the folder
under its official name (``cifar-10-batches-py``, ``cifar-100-python``) or torchvision's
(``FashionMNIST/raw``, ``MNIST/raw``). Problems are reported as :class:`DataError` with the
path and what is missing, never as a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mgspec.errors import Location
from mgspec.train import class_names
from mgspec.train.files import DataError, load_pickle, read_idx

__all__ = ["DATASETS", "DataError", "DatasetInfo", "Split", "check", "dataset_info", "load", "locate"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    format: str  # "cifar" or "idx"
    classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folders: tuple[str, ...]  # where the files may live under --data-dir
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str = "labels"
    augment: bool = False  # random crop (4-pixel padding) + horizontal flip
    #: Images in the official splits: a file may hold a subset, never more.
    train_images: int = 50_000
    test_images: int = 10_000

    def max_images(self, split: str) -> int:
        """The most images one file of ``split`` may hold."""
        total = self.train_images if split == "train" else self.test_images
        files = self.train_files if split == "train" else self.test_files
        return total if self.format == "idx" else total // len(files)

    class_names: tuple[str, ...] = ()  # in label order


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "cifar10",
        "CIFAR-10",
        "cifar",
        10,
        3,
        32,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        ("cifar-10-batches-py",),
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        augment=True,
        class_names=class_names.CIFAR10,
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        "CIFAR-100",
        "cifar",
        100,
        3,
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        ("cifar-100-python",),
        ("train",),
        ("test",),
        label_key="fine_labels",
        augment=True,
        class_names=class_names.CIFAR100,
    ),
    "fashionmnist": DatasetInfo(
        "fashionmnist",
        "FashionMNIST",
        "idx",
        10,
        1,
        28,
        (0.2860,),
        (0.3530,),
        ("fashion-mnist", "FashionMNIST/raw", "fashionmnist"),
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        train_images=60_000,
        class_names=class_names.FASHIONMNIST,
    ),
    "mnist": DatasetInfo(
        "mnist",
        "MNIST",
        "idx",
        10,
        1,
        28,
        (0.1307,),
        (0.3081,),
        ("mnist", "MNIST/raw"),
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        train_images=60_000,
        class_names=class_names.MNIST,
    ),
}


@dataclass
class Split:
    """One split in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}", hint=f"use one of {', '.join(DATASETS)}")
    return DATASETS[name]


def _file_in(folder: Path, name: str, info: DatasetInfo) -> Path | None:
    candidates = [name] if info.format == "cifar" else [name, name + ".gz"]
    for candidate in candidates:
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def locate(info: DatasetInfo, data_dir: Path, split: str = "train") -> Path:
    """The folder under ``data_dir`` that holds the dataset's files for ``split``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"no such directory: {data_dir}", hint=f"pass --data-dir with the {info.title} files")
    needed = info.train_files if split == "train" else info.test_files
    for folder in (data_dir, *(data_dir / f for f in info.folders)):
        if all(_file_in(folder, name, info) for name in needed):
            return folder
    # Report against the most plausible folder: the first one that holds any file of the dataset.
    for folder in (data_dir, *(data_dir / f for f in info.folders)):
        if any(_file_in(folder, name, info) for name in (*info.train_files, *info.test_files)):
            missing = [name for name in needed if _file_in(folder, name, info) is None]
            raise DataError(
                f"incomplete {info.title} directory: missing {', '.join(missing)}",
                Location(str(folder)),
                hint="re-extract the official archive, or pass --download",
            )
    expected = " or ".join(str(data_dir / f) for f in info.folders)
    raise DataError(
        f"no {info.title} files found (looked for {needed[0]} in {data_dir} and {expected})",
        Location(str(data_dir)),
        hint="point --data-dir at the extracted official files, or pass --download",
    )


def check(name: str, data_dir: str | Path) -> None:
    """Fail early, before a run directory exists, if either split is missing."""
    info = dataset_info(name)
    for split in ("train", "test"):
        locate(info, Path(data_dir), split)


def load(name: str, data_dir: str | Path, split: str) -> Split:
    """Read the ``train`` or ``test`` split of a dataset in its official format."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    info = dataset_info(name)
    folder = locate(info, Path(data_dir), split)
    files = info.train_files if split == "train" else info.test_files
    if info.format == "cifar":
        parts = [_read_cifar(folder / f, info, split) for f in files]
        return Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    images_path, labels_path = (_file_in(folder, f, info) for f in files)
    limit = info.max_images(split)
    images = read_idx(images_path, (None, info.size, info.size), limit)
    labels = read_idx(labels_path, (None,), limit)
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels", Location(str(labels_path)))
    labels = torch.from_numpy(labels.astype(np.int64))
    _check_labels(labels, info, labels_path)
    return Split(torch.from_numpy(images.copy()).unsqueeze(1).contiguous(), labels)


def _read_cifar(path: Path, info: DatasetInfo, split: str) -> Split:
    batch = load_pickle(path)
    where = Location(str(path))
    if not isinstance(batch, dict):
        raise DataError(f"not a {info.title} batch: a pickled {type(batch).__name__}, not a dict", where)
    batch = {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or info.label_key not in batch:
        keys = sorted(map(str, batch))
        raise DataError(f"not a {info.title} batch: keys {keys} lack 'data' or {info.label_key!r}", where)
    data, raw_labels, side = batch["data"], batch[info.label_key], info.size
    width = info.channels * side * side
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != width:
        got = f"{data.shape} {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"expected uint8 data of shape (N, {width}), got {got}", where)
    if not 1 <= len(data) <= info.max_images(split):
        raise DataError(f"{len(data):,} images; a {info.title} batch holds 1 to {info.max_images(split):,}", where)
    labels = _integer_labels(raw_labels, where, info)
    if len(data) != len(labels):
        raise DataError(f"{len(data)} images but {len(labels)} labels", where)
    _check_labels(labels, info, path)
    return Split(torch.from_numpy(data.copy()).view(-1, info.channels, side, side), labels)


def _integer_labels(raw, where: Location, info: DatasetInfo) -> torch.Tensor:
    """Labels as int64: a list of ints or a 1-D integer array, nothing else (no bools, floats, strings)."""
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise DataError(f"{info.label_key} must be a list of integers, got an array of {raw.dtype}", where)
        return torch.from_numpy(raw.astype(np.int64))
    if not isinstance(raw, list) or any(type(v) is not int for v in raw):
        bad = next((v for v in raw if type(v) is not int), raw) if isinstance(raw, list) else raw
        raise DataError(f"{info.label_key} must be a list of integers, not {type(bad).__name__} {bad!r:.40}", where)
    if any(not -(2**63) <= v < 2**63 for v in raw):
        raise DataError(f"{info.label_key} holds integers out of range", where, hint=f"is this really {info.title}?")
    return torch.tensor(raw, dtype=torch.long)


def _check_labels(labels: torch.Tensor, info: DatasetInfo, path: Path) -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= info.classes):
        raise DataError(
            f"labels out of range for {info.title}: {int(labels.min())}..{int(labels.max())}",
            Location(str(path)),
            hint=f"is this really {info.title}?",
        )
