"""Dataset loaders (official formats), augmentation, epoch batching and --download."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from mgspec.train import data
from mgspec.train.batches import EpochBatches, random_crop_flip
from mgspec.train.data import DataError
from mgspec.train.download import Resource, download
from tests.conftest import SHARED_DATA, needs_cifar, needs_mnist
from tests.synthetic import images_and_labels, write_cifar, write_idx


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10_pixels_and_labels_round_trip(tmp_path, bytes_keys):
    write_cifar(tmp_path, train_per_batch=6, test=5, bytes_keys=bytes_keys)
    train = data.load("cifar10", tmp_path, "train")  # the parent of cifar-10-batches-py
    test = data.load("cifar10", tmp_path / "cifar-10-batches-py", "test")  # or the folder itself
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (5, 3, 32, 32)
    # data_batch_1 was written from seed 0: row-major, channel-planar R, G, B
    images, labels = images_and_labels(6, 3, 32, 10, seed=0)
    assert torch.equal(train.images[:6], torch.from_numpy(images))
    assert train.labels[:6].tolist() == labels.tolist()


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar(tmp_path, train_per_batch=4, test=6, cifar100=True)
    train = data.load("cifar100", tmp_path, "train")
    assert len(train) == 20
    _, labels = images_and_labels(20, 3, 32, 100, seed=0)
    assert train.labels.tolist() == labels.tolist()
    assert int(train.labels.max()) >= 10  # fine labels, not the 20 coarse ones


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name,folder", [("fashionmnist", "FashionMNIST/raw"), ("mnist", ".")])
def test_idx_gzipped_or_raw(tmp_path, gz, name, folder):
    write_idx(tmp_path / folder, train=7, test=5, gz=gz)
    train = data.load(name, tmp_path, "train")
    test = data.load(name, tmp_path, "test")
    assert train.images.shape == (7, 1, 28, 28) and test.images.shape == (5, 1, 28, 28)
    images, labels = images_and_labels(7, 1, 28, 10, seed=0)
    assert torch.equal(train.images, torch.from_numpy(images))
    assert train.labels.tolist() == labels.tolist()


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r"no such directory: .*nowhere"):
        data.load("cifar10", tmp_path / "nowhere", "train")


def test_wrong_directory_names_what_was_looked_for(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 files found .*data_batch_1.*cifar-10-batches-py") as info:
        data.load("cifar10", tmp_path, "train")
    assert "--download" in str(info.value)


def test_incomplete_directory_lists_missing_files(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="incomplete CIFAR-10 directory: missing data_batch_3"):
        data.load("cifar10", tmp_path, "train")
    assert len(data.load("cifar10", tmp_path, "test")) == 24  # the test split is still complete


def test_corrupt_and_mislabelled_files(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch: not a CIFAR python batch"):
        data.load("cifar10", tmp_path, "test")
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(DataError, match=r"expected uint8 data of shape \(N, 3072\)"):
        data.load("cifar10", tmp_path, "test")
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 17]}, handle)
    with pytest.raises(DataError, match=r"labels out of range for CIFAR-10: 0..17"):
        data.load("cifar10", tmp_path, "test")


def test_bad_idx_files(tmp_path):
    folder = write_idx(tmp_path, gz=False)
    images = folder / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated IDX file"):
        data.load("mnist", tmp_path, "test")
    images.write_bytes(b"\x12\x34\x08\x03" + b"\0" * 12)
    with pytest.raises(DataError, match="bad magic number"):
        data.load("mnist", tmp_path, "test")
    (folder / "train-labels-idx1-ubyte").unlink()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read IDX file"):
        data.load("mnist", tmp_path, "train")


def _window(image: torch.Tensor, dy: int, dx: int, size: int, flip: bool) -> torch.Tensor:
    window = image[:, dy : dy + size, dx : dx + size]
    return window.flip(-1) if flip else window


def test_crop_flip_takes_a_window_of_the_padded_image():
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    out = random_crop_flip(images, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    flips = set()
    for i in range(len(images)):
        matches = [
            (dy, dx, f)
            for dy in range(5)
            for dx in range(5)
            for f in (False, True)
            if torch.equal(out[i], _window(padded[i], dy, dx, 8, f))
        ]
        assert matches, f"image {i} is not a (flipped) window of its padded original"
        flips |= {m[2] for m in matches}
    assert flips == {False, True}
    again = random_crop_flip(images, 2, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_epoch_batches_cover_every_image_once_per_epoch(tmp_path):
    write_cifar(tmp_path, train_per_batch=10, test=23)
    info = data.dataset_info("cifar10")
    train, test = data.load("cifar10", tmp_path, "train"), data.load("cifar10", tmp_path, "test")
    epochs = [EpochBatches(train, info, 8, train=True, seed=3, epoch=e) for e in (0, 1)]
    orders = [torch.cat(list(b.batches)) for b in epochs]
    assert all(sorted(o.tolist()) == list(range(50)) for o in orders)
    assert not torch.equal(orders[0], orders[1]), "each epoch is shuffled anew"
    assert torch.equal(orders[0], torch.cat(EpochBatches(train, info, 8, train=True, seed=3, epoch=0).batches))
    x, y = epochs[0][0]
    assert x.dtype == torch.float32 and x.shape == (8, 3, 32, 32) and y.shape == (8,)
    # two ranks: disjoint shards of the same epoch; the test split is split without padding
    ranks = [EpochBatches(train, info, 4, train=True, seed=3, epoch=0, rank=r, world=2) for r in (0, 1)]
    shards = [set(torch.cat(r.batches).tolist()) for r in ranks]
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(50))
    tests = [EpochBatches(test, info, 4, train=False, rank=r, world=2) for r in (0, 1)]
    assert sorted(torch.cat([torch.cat(t.batches) for t in tests]).tolist()) == list(range(23))


def test_test_batches_are_not_augmented(tmp_path):
    write_cifar(tmp_path)
    info = data.dataset_info("cifar10")
    test = data.load("cifar10", tmp_path, "test")
    x, _ = EpochBatches(test, info, 24, train=False)[0]
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    assert torch.allclose(x, (test.images.float() / 255 - mean) / std)


def _cifar_archive(tmp_path) -> tuple[bytes, str]:
    source = tmp_path / "source"
    folder = write_cifar(source)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    blob = buffer.getvalue()
    return blob, hashlib.md5(blob).hexdigest()


def test_download_checks_the_checksum_and_extracts(tmp_path):
    blob, md5 = _cifar_archive(tmp_path)
    served = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    served.parent.mkdir()
    served.write_bytes(blob)
    target = tmp_path / "data"
    log: list[str] = []
    download("cifar10", target, (Resource(served.as_uri(), md5, extract=True),), log=log.append)
    assert len(data.load("cifar10", target, "train")) == 80
    assert "downloaded, checksum ok" in log[0]
    served.unlink()  # present with the right checksum: not fetched again
    download("cifar10", target, (Resource(served.as_uri(), md5, extract=True),), log=log.append)
    assert "present, checksum ok" in log[1]


def test_download_rejects_a_bad_checksum_and_keeps_nothing(tmp_path):
    served = tmp_path / "t10k-images-idx3-ubyte.gz"
    served.write_bytes(gzip.compress(b"tampered"))
    target = tmp_path / "data"
    resource = Resource(served.as_uri(), "0" * 32)
    with pytest.raises(DataError, match="checksum mismatch .* expected 0000"):
        download("fashionmnist", target, (resource,))
    assert list((target / "fashion-mnist").iterdir()) == []


def test_download_reports_an_unreachable_url(tmp_path):
    resource = Resource((tmp_path / "missing.tar.gz").as_uri(), "0" * 32, extract=True)
    with pytest.raises(DataError, match="cannot download .*missing.tar.gz"):
        download("cifar10", tmp_path / "data", (resource,))


def test_published_checksums_are_the_official_ones():
    from mgspec.train.download import RESOURCES

    assert RESOURCES["cifar10"][0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert {r.filename: r.md5 for r in RESOURCES["mnist"]}["t10k-images-idx3-ubyte.gz"] == (
        "9fb629c4189551a2d022fa330f9573f3"
    )


# --- the real data in ../shared/data (skipped when absent) ---------------------------------


@needs_cifar
def test_real_cifar10_subset():
    train = data.load("cifar10", SHARED_DATA, "train")
    test = data.load("cifar10", SHARED_DATA / "cifar-10-batches-py", "test")
    assert train.images.shape == (4660, 3, 32, 32) and test.images.shape == (846, 3, 32, 32)
    assert set(train.labels.tolist()) == set(range(10)) and set(test.labels.tolist()) == set(range(10))
    counts = torch.bincount(train.labels, minlength=10)
    assert counts.min() > 0.7 * counts.float().mean()  # roughly balanced, as documented
    # natural images: per-channel means near the published CIFAR-10 statistics
    means = train.images.float().mean((0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor(data.DATASETS["cifar10"].mean), atol=0.03)


@needs_mnist
@pytest.mark.parametrize("name", ["mnist", "fashionmnist"])
def test_real_mnist_test_set_through_both_idx_loaders(name):
    from mgspec.train.download import RESOURCES, md5sum

    folder = SHARED_DATA / "mnist"
    official = {r.filename: r.md5 for r in RESOURCES["mnist"]}
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert md5sum(folder / f) == official[f]
    test = data.load(name, folder, "test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist()[:2] == [980, 1135]  # MNIST's documented test counts
    with pytest.raises(DataError, match="incomplete .* missing train-images-idx3-ubyte"):
        data.load(name, folder, "train")
