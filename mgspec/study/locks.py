"""The study's lock: one process at a time in the steps that read a study and then write it.

Three steps read the study and then write it: creating it (queueing the grid), drawing a search
point (is it new? are the trials all drawn?), and taking over an interrupted trial
(:mod:`mgspec.study.claims`). Each runs under :func:`locked`. The lock is one the operating
system or the database server drops with its holder, so a killed process never leaves it held
and a live holder, however long its step, never has it broken by a waiter:

- journal file: ``flock`` on ``<out>/journal.log.mgspec.lock`` (on NFS, the client turns it into
  a lock of the server's, which needs the file system's locking: ``lockd``, or NFSv4; a file
  system that cannot lock files is refused with what to use instead);
- PostgreSQL: a session advisory lock; MySQL: ``GET_LOCK``. The session's TCP keepalives are
  shortened so the server notices a holder whose machine is gone within about 90 s.

A waiter polls, calling ``wait()`` between tries: a worker told to stop raises there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mgspec.errors import Location, SpecError

#: Seconds between two tries of a waiter.
POLL_S = 0.05
#: Server-side TCP keepalives of a PostgreSQL lock session (idle, interval, count: about 90 s).
KEEPALIVES = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 6}


@contextlib.contextmanager
def locked(storage, out: Path, name: str, wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the study ``name``'s lock in ``storage`` (the journal's lock file lives in ``out``)."""
    from optuna.storages import JournalStorage, RDBStorage

    if isinstance(storage, JournalStorage):
        with _file_lock(Path(out) / "journal.log.mgspec.lock", wait):
            yield
        return
    dialect = storage.engine.dialect.name if isinstance(storage, RDBStorage) else None
    if dialect not in ("postgresql", "mysql"):  # SQLite: one writer (parallel writers are refused)
        yield
        return
    with _server_lock(storage.engine, dialect, f"mgspec:{name}", wait):
        yield


@contextlib.contextmanager
def _file_lock(path: Path, wait: Callable[[], None] | None) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise SpecError(
                        f"the file system cannot lock the journal's lock file: {os.strerror(exc.errno or 0)}",
                        Location(str(path)),
                        hint="mount it with locking (NFS: lockd or NFSv4), or share the study through PostgreSQL",
                    ) from None
            if wait is not None:
                wait()
            time.sleep(POLL_S)
        yield
    finally:
        with contextlib.suppress(OSError):  # closing drops the lock; a stale NFS handle has none left
            os.close(fd)


@contextlib.contextmanager
def _server_lock(engine, dialect: str, key: str, wait: Callable[[], None] | None) -> Iterator[None]:
    from sqlalchemy import text

    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    take, give = {
        "postgresql": ("SELECT pg_try_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)"),
        "mysql": ("SELECT GET_LOCK(:k, 0)", "SELECT RELEASE_LOCK(:k)"),
    }[dialect]
    arg = {"k": number if dialect == "postgresql" else key[:64]}
    with engine.connect() as connection:
        if dialect == "postgresql":
            for setting, value in KEEPALIVES.items():
                connection.execute(text(f"SET {setting} = {int(value)}"))
        while not connection.execute(text(take), arg).scalar():
            connection.commit()
            if wait is not None:
                wait()
            time.sleep(POLL_S * 4)
        connection.commit()
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a dropped connection released it already
                connection.execute(text(give), arg)
                connection.commit()
