"""Reading untrusted dataset files: a restricted unpickler and a bounded, streamed IDX reader.

A CIFAR "python version" batch is a pickle, and a pickle can name any callable to run while it
loads. :func:`load_pickle` resolves only the globals the official files (and numpy's own
pickles of plain arrays) reference — ``numpy.core.multiarray._reconstruct`` (or numpy 2's
``numpy._core.multiarray``), ``numpy.ndarray``, ``numpy.dtype`` restricted to plain numeric
dtypes, ``_codecs.encode`` restricted to latin-1 and ``bytes()`` without arguments (how
protocol 2 stores bytes) — and
refuses every other one before anything is called. Nothing else in the file can run code.

:func:`read_idx` reads an IDX file (raw or gzipped) as a stream: it checks the header first
(magic number, type, dimensions, the expected shape) and then reads exactly the bytes the
header announces, so a small gzip that inflates to gigabytes is refused after reading at most
the announced size plus one byte.
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from mgspec.errors import Location, SpecError

#: A file larger than this is not a dataset batch (CIFAR-100's ``train`` is 155 MB).
MAX_PICKLE_BYTES = 512 * 1024 * 1024
#: dtype kinds a batch may hold: booleans, signed and unsigned integers, floats.
PLAIN_KINDS = "biuf"


class DataError(SpecError):
    """A wrong, incomplete, corrupt or crafted dataset file."""


def _plain_dtype(*args, **kwargs) -> np.dtype:
    dtype = np.dtype(*args, **kwargs)
    if dtype.kind not in PLAIN_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"refused dtype {dtype.str!r} (only plain numeric arrays are read)")
    return dtype


def _latin1(text, encoding="utf-8", errors="strict"):
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1" or errors != "strict":
        raise pickle.UnpicklingError("refused _codecs.encode call (only latin-1 text to bytes is read)")
    return text.encode("latin-1")


def _empty_bytes(*args):
    if args:
        raise pickle.UnpicklingError("refused bytes() call with arguments")
    return b""


def _reconstruct(subtype, shape, dtype_code):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("refused array subclass")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(dtype_code))


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1,
    ("__builtin__", "bytes"): _empty_bytes,  # protocol 2's empty bytes
    ("builtins", "bytes"): _empty_bytes,
}
_CALLABLE = (_reconstruct, _plain_dtype, _latin1, _empty_bytes)


class _Restricted(pickle._Unpickler):  # the Python unpickler: its opcodes can be checked one by one
    """Resolves only :data:`_ALLOWED`; calls only the checked constructors; builds only plain arrays."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (a dataset batch holds only data)") from None

    def _reduce(self) -> None:
        if not any(self.stack[-2] is allowed for allowed in _CALLABLE):
            raise pickle.UnpicklingError("refused call (a dataset batch holds only data)")
        pickle._Unpickler.load_reduce(self)

    def _build(self) -> None:
        target = self.stack[-2]
        if not isinstance(target, np.ndarray | np.dtype):
            raise pickle.UnpicklingError(f"refused state for {type(target).__name__}")
        pickle._Unpickler.load_build(self)
        if isinstance(target, np.dtype):
            _plain_dtype(target)
        elif target.dtype.kind not in PLAIN_KINDS or target.dtype.hasobject:
            raise pickle.UnpicklingError("refused array of a non-numeric dtype")

    def _refused(self) -> None:
        raise pickle.UnpicklingError("refused opcode (a dataset batch holds only data)")

    dispatch[pickle.REDUCE[0]] = _reduce
    dispatch[pickle.BUILD[0]] = _build
    for _code in (pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST, pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_code[0]] = _refused
    del _code


def load_pickle(path: Path) -> object:
    """The object in a dataset pickle, built from plain containers and numeric numpy arrays only."""
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise DataError(f"{size:,} bytes is too large for a dataset batch", Location(str(path)))
        with path.open("rb") as handle:
            return _Restricted(handle, encoding="bytes").load()
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", Location(str(path))) from None
    except Exception as exc:  # any malformed pickle: UnpicklingError, EOFError, ValueError, TypeError, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"not a CIFAR python batch: {reason}", Location(str(path))) from None


def _read_exactly(handle, n: int, path: Path, what: str) -> bytes:
    chunks, left = [], n
    while left:
        chunk = handle.read(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) != n:
        verb = "have" if what.endswith("s") else "has"
        raise DataError(f"truncated IDX file: {what} {verb} {len(data)} of {n} bytes", Location(str(path)))
    return data


def read_idx(path: Path, shape: tuple[int | None, ...], max_items: int) -> np.ndarray:
    """An unsigned-byte IDX file whose shape is ``shape`` (``None``: the item count, 1..``max_items``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return _read_idx_stream(handle, path, shape, max_items)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file: {exc}", Location(str(path))) from None


def _read_idx_stream(handle: io.BufferedIOBase, path: Path, shape: tuple[int | None, ...], max_items: int):
    where = Location(str(path))
    head = _read_exactly(handle, 4, path, "the header")
    if head[0] != 0 or head[1] != 0:
        raise DataError("not an IDX file (bad magic number)", where)
    if head[2] != 0x08 or head[3] != len(shape):
        raise DataError(
            f"expected an unsigned-byte IDX file with {len(shape)} dimension(s), got type 0x{head[2]:02x}, "
            f"{head[3]} dimension(s)",
            where,
        )
    dims = struct.unpack(f">{len(shape)}I", _read_exactly(handle, 4 * len(shape), path, "the dimensions"))
    if not 1 <= dims[0] <= max_items:
        raise DataError(f"the header announces {dims[0]:,} items; this dataset has 1 to {max_items:,}", where)
    if any(want is not None and got != want for want, got in zip(shape, dims, strict=True)):
        expected = "x".join("N" if s is None else str(s) for s in shape)
        raise DataError(f"expected items of shape {expected}, the header says {'x'.join(map(str, dims))}", where)
    size = int(np.prod(dims))
    body = _read_exactly(handle, size, path, "the body")
    if handle.read(1):
        raise DataError(f"the file holds more than the {size:,} bytes its header announces", where)
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)
