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

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from mgspec.errors import Location, SpecError
from mgspec.train import class_names


class DataError(SpecError):
    """A wrong, incomplete or corrupt dataset directory."""


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
        parts = [_read_cifar(folder / f, info) for f in files]
        return Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    images_path, labels_path = (_file_in(folder, f, info) for f in files)
    images = _read_idx(images_path, expected_dims=3)
    labels = _read_idx(labels_path, expected_dims=1)
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels", Location(str(labels_path)))
    _check_labels(labels.long(), info, labels_path)
    return Split(images.unsqueeze(1).contiguous(), labels.long())


def _read_cifar(path: Path, info: DatasetInfo) -> Split:
    try:
        with path.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"not a CIFAR python batch: {exc}", Location(str(path))) from None
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or info.label_key not in batch:
        raise DataError(
            f"not a {info.title} batch: keys {sorted(batch)} lack 'data' or {info.label_key!r}",
            Location(str(path)),
        )
    data = torch.as_tensor(batch["data"])
    labels = torch.as_tensor(list(batch[info.label_key]), dtype=torch.long)
    side = info.size
    if data.dtype != torch.uint8 or data.ndim != 2 or data.shape[1] != info.channels * side * side:
        raise DataError(
            f"expected uint8 data of shape (N, {info.channels * side * side}), got {tuple(data.shape)} {data.dtype}",
            Location(str(path)),
        )
    if len(data) != len(labels):
        raise DataError(f"{len(data)} images but {len(labels)} labels", Location(str(path)))
    _check_labels(labels, info, path)
    return Split(data.view(-1, info.channels, side, side).clone(), labels)


_IDX_TYPES = {0x08: torch.uint8}


def _read_idx(path: Path, expected_dims: int) -> torch.Tensor:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file: {exc}", Location(str(path))) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError("not an IDX file (bad magic number)", Location(str(path)))
    dtype, dims = raw[2], raw[3]
    if dtype not in _IDX_TYPES or dims != expected_dims:
        raise DataError(
            f"expected an unsigned-byte IDX file with {expected_dims} dimension(s), got type 0x{dtype:02x}, "
            f"{dims} dimension(s)",
            Location(str(path)),
        )
    shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
    body = raw[4 + 4 * dims :]
    expected = 1
    for n in shape:
        expected *= n
    if len(body) != expected:
        raise DataError(f"truncated IDX file: {len(body)} of {expected} bytes", Location(str(path)))
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).view(*shape)


def _check_labels(labels: torch.Tensor, info: DatasetInfo, path: Path) -> None:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= info.classes):
        raise DataError(
            f"labels out of range for {info.title}: {int(labels.min())}..{int(labels.max())}",
            Location(str(path)),
            hint=f"is this really {info.title}?",
        )
