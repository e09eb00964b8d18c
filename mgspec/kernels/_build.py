"""Compile the C++ kernels on first use and load them into torch.

The library is built once per (source, torch build, compiler, CPU) with the system C++
compiler (``$CXX``, else ``c++``/``g++``/``clang++``) and ``-march=native -fopenmp``, into a
per-user cache (``$MGSPEC_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/mgspec/kernels`` or
``~/.cache/mgspec/kernels``). A file lock makes parallel processes (pytest workers, torchrun
ranks) wait for one build instead of racing; the result is written to a temporary name and
renamed into place, so a killed build leaves nothing half-written behind.

Any failure (no compiler, a compile error, an unwritable cache, a library that does not load)
is reported once, in one line on stderr, and :func:`load` returns ``None``: callers then use
``F.conv2d``. Nothing here raises.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("gconv3x3.cpp")
NAME = "gconv3x3"
#: Compile flags besides the include paths and the ABI define. -fopenmp at compile *and* link
#: time: at::parallel_for is a header template, without OpenMP it silently runs on one thread.
FLAGS = ["-O3", "-march=native", "-std=c++20", "-fPIC", "-shared", "-fopenmp", "-w"]
COMPILE_TIMEOUT_S = 600

_lock = threading.Lock()
_result: dict[str, object] = {}


def cache_dir() -> Path:
    if os.environ.get("MGSPEC_KERNEL_CACHE"):
        return Path(os.environ["MGSPEC_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mgspec" / "kernels"


def compiler() -> str | None:
    """The C++ compiler to use: ``$CXX`` when set (even if it does not exist), else the first found."""
    if os.environ.get("CXX"):
        return os.environ["CXX"]
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _torch_paths() -> tuple[list[str], str]:
    from torch.utils.cpp_extension import include_paths

    return include_paths(), str(Path(torch.__file__).parent / "lib")


def _command(cxx: str, output: Path) -> list[str]:
    includes, libdir = _torch_paths()
    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", 1))
    return [
        cxx,
        *FLAGS,
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *[f"-I{p}" for p in includes],
        str(SOURCE),
        f"-L{libdir}",
        "-lc10",
        "-ltorch_cpu",
        f"-Wl,-rpath,{libdir}",
        "-o",
        str(output),
    ]


def _key(cxx: str) -> str:
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"no C++ compiler at {cxx!r} ({exc.__class__.__name__})") from None
    parts = [SOURCE.read_bytes().decode(), torch.__version__, str(torch.version.git_version), version, " ".join(FLAGS)]
    parts.append(_cpu_flags())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _build(cxx: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_suffix(".lock")
    with open(lock_path, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: builds may race, the rename below keeps them whole
            pass
        if target.exists():  # another process built it while we waited
            return
        print(
            f"mgspec: compiling the grouped 3x3 convolution kernel for this CPU into {target.parent} "
            "(once, about 20 s)",
            file=sys.stderr,
            flush=True,
        )
        fd, tmp_name = tempfile.mkstemp(suffix=".so", prefix=f".{target.stem}-", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            proc = subprocess.run(_command(cxx, tmp), capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            if proc.returncode != 0:
                log = target.with_suffix(".log")
                log.write_text(proc.stdout + proc.stderr)
                raise RuntimeError(f"the compiler failed (exit {proc.returncode}; log in {log})")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def load() -> str | None:
    """Path of the loaded kernel library, building it first if needed; ``None`` if unavailable.

    The outcome is remembered for the process: one attempt, one message.
    """
    with _lock:
        if "path" in _result:
            return _result["path"]  # type: ignore[return-value]
        path: str | None = None
        try:
            cxx = compiler()
            if cxx is None:
                raise RuntimeError("no C++ compiler found (set CXX)")
            target = cache_dir() / f"{NAME}-{_key(cxx)}.so"
            if not target.exists():
                _build(cxx, target)
            torch.ops.load_library(str(target))
            path = str(target)
        except Exception as exc:  # never crash: report once, fall back to F.conv2d
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            _result["error"] = reason
            print(f"mgspec: grouped 3x3 convolution kernel unavailable ({reason}); using F.conv2d", file=sys.stderr)
        _result["path"] = path
        return path


def error() -> str | None:
    """Why :func:`load` returned ``None`` (after it ran), else ``None``."""
    return _result.get("error")  # type: ignore[return-value]
