"""``--download``: fetch the official archives and check their published MD5 checksums.

Files already present with the right checksum are not fetched again. A download goes to a
temporary name and is renamed only once its checksum matches, so an interrupted or corrupt
download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mgspec.errors import Location
from mgspec.train.data import DataError, dataset_info


@dataclass(frozen=True)
class Resource:
    url: str
    md5: str
    extract: bool = False  # a tar.gz to unpack into the data directory

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: The official archives and their published checksums.
RESOURCES: dict[str, tuple[Resource, ...]] = {
    "cifar10": (
        Resource("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", True),
    ),
    "cifar100": (
        Resource("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", True),
    ),
    "fashionmnist": (
        Resource(_FASHION + "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Resource(_FASHION + "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        Resource(_FASHION + "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        Resource(_FASHION + "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    "mnist": (
        Resource(_MNIST + "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        Resource(_MNIST + "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        Resource(_MNIST + "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        Resource(_MNIST + "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
}


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(name: str, data_dir: str | Path, resources: tuple[Resource, ...] | None = None, log=print) -> Path:
    """Fetch ``name`` into ``data_dir`` (IDX files into its official folder); returns ``data_dir``."""
    info = dataset_info(name)
    data_dir = Path(data_dir)
    target = data_dir if info.format == "cifar" else data_dir / info.folders[0]
    target.mkdir(parents=True, exist_ok=True)
    for resource in resources if resources is not None else RESOURCES[name]:
        path = target / resource.filename
        if path.is_file() and md5sum(path) == resource.md5:
            log(f"{path}: present, checksum ok")
        else:
            _fetch(resource, path)
            log(f"{path}: downloaded, checksum ok")
        if resource.extract:
            _extract(path, data_dir)
    return data_dir


def _fetch(resource: Resource, path: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(resource.url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        actual = md5sum(tmp)
        if actual != resource.md5:
            raise DataError(
                f"checksum mismatch for {resource.url}: got md5 {actual}, expected {resource.md5}",
                Location(str(path)),
                hint="the download is corrupt or the file changed upstream; nothing was kept",
            )
        os.replace(tmp, path)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download {resource.url}: {reason}",
            hint="download the official files by hand and pass --data-dir",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _extract(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"cannot extract: {exc}", Location(str(archive))) from None
