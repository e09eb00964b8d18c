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


SLURM_DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")


def slurm_missing() -> str | None:
    """Why a single-node Slurm cannot start here, or None when it can."""
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin"
    missing = [name for name in SLURM_DAEMONS if shutil.which(name, path=path) is None]
    if missing:
        return f"no Slurm here ({', '.join(missing)} missing): install slurm-wlm and munge"
    if os.geteuid() != 0:
        return "a single-node Slurm needs root to start slurmd"
    return None


SLURM_CONF = """\
ClusterName=mgspec-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=5
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _daemon(command: list[str]) -> None:
    tool = shutil.which(command[0], path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin") or command[0]
    subprocess.run([tool, *command[1:]], check=True, capture_output=True, text=True, timeout=60)


def _kill(pid_file: Path) -> None:
    try:
        os.kill(int(pid_file.read_text().split()[0]), 15)
    except (OSError, ValueError, IndexError):
        pass


@contextmanager
def slurm() -> Iterator[dict]:
    """munged, slurmctld and slurmd on this machine; yields the environment that reaches them."""
    root = Path(tempfile.mkdtemp(prefix="mgspec-slurm-"))
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir()
    host = socket.gethostname()
    conf = root / "slurm.conf"
    text = SLURM_CONF.format(root=root, host=host, ctld_port=free_port(), d_port=free_port(), cpus=os.cpu_count())
    conf.write_text(text)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    munge = root / "munge"
    try:
        os.chmod(munge, 0o700)
        _daemon(["mungekey", "-c", "-k", str(munge / "key-file")])
        os.chmod(munge / "key-file", 0o400)
        files = {f"--{name}": str(munge / name) for name in ("key-file", "socket", "pid-file", "log-file", "seed-file")}
        _daemon(["munged", "-f", *(item for pair in files.items() for item in pair)])
        _daemon(["slurmctld", "-f", str(conf)])
        _daemon(["slurmd", "-f", str(conf)])
        _wait_idle(env)
        yield env
    finally:
        subprocess.run(
            ["scancel", "--full", "--user", pwd.getpwuid(os.geteuid()).pw_name],
            env=env,
            capture_output=True,
            timeout=30,
        )
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/pid-file"):
            _kill(root / pid_file)
        shutil.rmtree(root, ignore_errors=True)


def _wait_idle(env: dict, timeout_s: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=30)
        if done.returncode == 0 and done.stdout.strip() == "idle":
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Slurm node did not come up: {done.stdout.strip()} {done.stderr.strip()}")
