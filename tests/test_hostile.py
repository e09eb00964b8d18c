"""Hostile data files: crafted pickles never run, corrupt or foreign files are one located error.

Pickles are crafted to create a marker file if any code of theirs ran; every test asserts the
marker does not exist. IDX files and pickles are also mutated at random (hypothesis): the
loader either returns a split that fits the dataset's definition or raises a DataError.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgspec.train import data
from mgspec.train.data import DataError
from tests.synthetic import idx_bytes, images_and_labels, write_cifar, write_idx

FUZZ = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])


class _Payload:
    """Unpickling this runs ``os.system`` (the classic attack)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpenPayload:
    """Unpickling this calls ``builtins.open`` to create the marker."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _valid_batch(n: int = 4) -> dict:
    images, labels = images_and_labels(n, 3, 32, 10, seed=0)
    return {b"data": images.reshape(n, -1), b"labels": labels.tolist(), b"batch_label": b"test"}


def _crafted(marker) -> list[bytes]:
    """Pickles that would create ``marker`` if the loader ran anything they name."""
    batch = _valid_batch()
    out = []
    for protocol in (0, 2, 4, 5):
        out.append(pickle.dumps(_Payload(marker), protocol=protocol))
        out.append(pickle.dumps({**batch, b"labels": _OpenPayload(marker)}, protocol=protocol))
        out.append(pickle.dumps({**batch, b"extra": [_Payload(marker)]}, protocol=protocol))
        out.append(pickle.dumps(np.array([_Payload(marker)], dtype=object), protocol=protocol))
    # An allowed global used as something else: numpy.dtype called on an object dtype.
    out.append(b"cnumpy\ndtype\n(VO8\ntR.")
    # os.system by GLOBAL opcode, hand written (protocol 0 text).
    out.append(f"cos\nsystem\n(V touch {marker}\ntR.".encode())
    out.append(f"cposix\nsystem\n(V touch {marker}\ntR.".encode())
    out.append(f"cbuiltins\nexec\n(Vopen({str(marker)!r}, 'w')\ntR.".encode())
    return out


def test_the_official_files_globals_load(tmp_path):
    folder = write_cifar(tmp_path, train_per_batch=3, test=2)
    split = data.load("cifar10", tmp_path, "test")
    assert split.images.shape == (2, 3, 32, 32) and len(split) == 2
    # The hand-checked globals of the official (Python 2, protocol 2) batches.
    official = (
        b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00"
        b"\x85U\x01b\x87Rq\x04(K\x01K\x01M\x00\x0c\x86cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06(K\x03U\x01|"
        b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbI00\nT\x00\x0c\x00\x00"
        + bytes(3072)
        + b"tbU\x06labelsq\x07]q\x08K\x03au."
    )
    (folder / "test_batch").write_bytes(official)
    split = data.load("cifar10", tmp_path, "test")
    assert split.labels.tolist() == [3] and int(split.images.sum()) == 0


def test_crafted_pickles_never_run(tmp_path):
    marker = tmp_path / "marker"
    folder = write_cifar(tmp_path, train_per_batch=3, test=2)
    for payload in _crafted(marker):
        (folder / "test_batch").write_bytes(payload)
        with pytest.raises(DataError, match="test_batch: not a CIFAR"):
            data.load("cifar10", tmp_path, "test")
        assert not marker.exists(), payload
    # The payloads do run under plain pickle: the test would notice if they did here.
    pickle.loads(pickle.dumps(_OpenPayload(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0.5, 1.0], "labels must be a list of integers, not float"),
        (["1", "2"], "labels must be a list of integers, not str"),
        ([True, False], "labels must be a list of integers, not bool"),
        ([2**70, 0], "out of range"),
        (np.array([[1, 2]]), "labels must be a list of integers, got an array"),
        (np.array([1.0, 2.0]), "got an array of float64"),
        ("12", "not str"),
    ],
)
def test_labels_that_are_not_integers(tmp_path, labels, message):
    folder = write_cifar(tmp_path, train_per_batch=3, test=2)
    batch = {**_valid_batch(2), b"labels": labels}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=message):
        data.load("cifar10", tmp_path, "test")


def test_cifar_batch_that_is_not_a_dict_or_has_no_images(tmp_path):
    folder = write_cifar(tmp_path, train_per_batch=3, test=2)
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match="a pickled list, not a dict"):
        data.load("cifar10", tmp_path, "test")
    batch = {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="0 images; a CIFAR-10 batch holds 1 to 10,000"):
        data.load("cifar10", tmp_path, "test")
    batch = {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="expected uint8 data"):
        data.load("cifar10", tmp_path, "test")


def _idx_folder(tmp_path, images: bytes, labels: bytes | None = None, gz: bool = False):
    folder = write_idx(tmp_path / "mnist", train=4, test=4, gz=gz)
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else (lambda b: b)
    (folder / f"t10k-images-idx3-ubyte{suffix}").write_bytes(pack(images))
    if labels is not None:
        (folder / f"t10k-labels-idx1-ubyte{suffix}").write_bytes(pack(labels))
    return tmp_path


@pytest.mark.parametrize(
    "images, message",
    [
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX file: the dimensions have 2 of 12 bytes"),
        (b"\x00\x00\x08", "truncated IDX file: the header has 3 of 4 bytes"),
        (struct.pack(">BBBBIII", 0, 0, 8, 3, 0, 28, 28), "announces 0 items; this dataset has 1 to 10,000"),
        (idx_bytes(np.zeros((4, 1, 1))), "expected items of shape Nx28x28, the header says 4x1x1"),
        (idx_bytes(np.zeros((4, 64, 64))), "expected items of shape Nx28x28, the header says 4x64x64"),
        (idx_bytes(np.zeros((4, 28, 28))) + b"\x00", "holds more than the 3,136 bytes its header announces"),
        (struct.pack(">BBBBIII", 0, 0, 8, 3, 4_000_000_000, 28, 28), "announces 4,000,000,000 items"),
        (struct.pack(">BBBBII", 0, 0, 8, 2, 4, 784) + bytes(3136), "with 3 dimension"),
        (struct.pack(">BBBBIII", 0, 0, 0x0D, 3, 4, 28, 28) + bytes(4 * 3136), "got type 0x0d"),
    ],
)
def test_bad_idx_headers(tmp_path, images, message):
    root = _idx_folder(tmp_path, images)
    with pytest.raises(DataError, match=message):
        data.load("mnist", root, "test")


@pytest.mark.slow
def test_gzip_bomb_is_refused_after_the_announced_bytes(tmp_path):
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 4, 28, 28)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # a gzip stream of 1 GiB of zeros, a few MB on disk
    parts = [compressor.compress(header + bytes(4 * 784))]
    chunk = bytes(1 << 24)
    parts += [compressor.compress(chunk) for _ in range(64)]
    parts.append(compressor.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 2_000_000
    folder = write_idx(tmp_path / "mnist", train=4, test=4, gz=True)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(bomb)
    with pytest.raises(DataError, match="holds more than the 3,136 bytes"):
        data.load("mnist", tmp_path, "test")


def _mutate(blob: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "splice"]))
    if not blob:
        return blob
    at = draw(st.integers(0, len(blob) - 1))
    if kind == "flip":
        return blob[:at] + bytes([blob[at] ^ draw(st.integers(1, 255))]) + blob[at + 1 :]
    if kind == "truncate":
        return blob[:at]
    if kind == "insert":
        return blob[:at] + draw(st.binary(min_size=1, max_size=16)) + blob[at:]
    opcodes = [b"cos\nsystem\n", b"\x93", b"R", b"b", b"\x81", b"\x92", b"i"]
    return blob[:at] + draw(st.sampled_from(opcodes)) + blob[at:]


@FUZZ
@given(st.data())
def test_fuzzed_pickles_are_a_data_error_or_a_valid_split(tmp_path, data_):
    marker = tmp_path / "marker"
    blobs = [pickle.dumps(_valid_batch(), protocol=p) for p in (2, 4)] + _crafted(marker)
    blob = _mutate(data_.draw(st.sampled_from(blobs)), data_.draw)
    folder = tmp_path / "cifar-10-batches-py"
    if not folder.exists():
        write_cifar(tmp_path, train_per_batch=2, test=2)
    (folder / "test_batch").write_bytes(blob)
    try:
        split = data.load("cifar10", tmp_path, "test")
    except DataError as exc:
        assert str(exc).startswith(str(folder / "test_batch")), exc
    else:
        assert split.images.dtype.is_floating_point is False and split.images.shape[1:] == (3, 32, 32)
        assert len(split.labels) == len(split.images) and 0 <= int(split.labels.min()) <= int(split.labels.max()) < 10
    assert not marker.exists()


@FUZZ
@given(st.data(), st.booleans())
def test_fuzzed_idx_files_are_a_data_error_or_a_valid_split(tmp_path, data_, gz):
    images, labels = images_and_labels(3, 1, 28, 10, seed=0)
    which = data_.draw(st.sampled_from(["images", "labels"]))
    raw = idx_bytes(images[:, 0]) if which == "images" else idx_bytes(labels)
    blob = _mutate(raw, data_.draw)
    folder = write_idx(tmp_path / "mnist", train=3, test=3, gz=gz)
    name = f"t10k-{which}-idx{3 if which == 'images' else 1}-ubyte"
    for stale in (name, name + ".gz"):
        (folder / stale).unlink(missing_ok=True)
    (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(blob) if gz else blob)
    try:
        split = data.load("mnist", tmp_path, "test")
    except DataError as exc:
        assert str(exc).startswith(str(folder)), exc
    else:
        assert split.images.shape[1:] == (1, 28, 28) and len(split.images) == len(split.labels)
        assert 0 <= int(split.labels.min()) and int(split.labels.max()) < 10


def test_idx_loader_reads_io_errors_as_data_errors(tmp_path):
    folder = write_idx(tmp_path / "mnist", train=3, test=3, gz=True)
    good = (folder / "t10k-images-idx3-ubyte.gz").read_bytes()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cannot read IDX file|truncated IDX file"):
        data.load("mnist", tmp_path, "test")
