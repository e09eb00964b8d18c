"""Real servers for the tests, started from the system's binaries into temporary directories.

PostgreSQL: ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin`` (Debian's
layout) or the ``PATH``, a cluster in a fresh directory under /tmp, listening on 127.0.0.1 at a
free port with its unix socket in that directory, trust authentication, fsync off. PostgreSQL
refuses to run as root, so as root the server runs as the ``postgres`` user (or ``nobody``),
which owns the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None where PostgreSQL is not installed."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> str | None:
    """The unprivileged user to run the server as when the tests run as root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL")


def _as(user: str | None, command: list[str]) -> list[str]:
    return command if user is None else ["runuser", "-u", user, "--", *command]


@contextmanager
def postgres(binaries: Path) -> Iterator[str]:
    """A running PostgreSQL; yields its URL (``postgresql://USER@127.0.0.1:PORT/postgres``)."""
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="mgspec-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, port, superuser = root / "data", free_port(), user or pwd.getpwuid(os.geteuid()).pw_name
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    try:
        init = [str(binaries / "initdb"), "-D", str(data), "-U", superuser, "--auth=trust", "-E", "UTF8"]
        subprocess.run(_as(user, [*init, "--no-sync"]), **run)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-o", options]
        subprocess.run(_as(user, [*start, "start"]), **run)
        try:
            yield f"postgresql://{superuser}@127.0.0.1:{port}/postgres"
        finally:
            stop = [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            subprocess.run(_as(user, stop), capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
