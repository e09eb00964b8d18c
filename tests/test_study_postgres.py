"""Studies on a real PostgreSQL server started by the test: two `study run` processes share one study."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import servers, synthetic

pytest.importorskip("optuna", reason="studies need the study extra: pip install 'mgspec[study]'")
pytest.importorskip("psycopg", reason="PostgreSQL storages need psycopg: pip install 'mgspec[study]'")

ROOT = Path(__file__).resolve().parents[1]
BINARIES = servers.postgres_bin()
pytestmark = pytest.mark.skipif(
    BINARIES is None, reason="no PostgreSQL binaries (initdb, pg_ctl): install the postgresql package"
)

STUDY = """\
name: shared
spec: tiny.yaml
dataset: cifar10
train: {epochs: 1, batch_size: 16}
seeds: 2
grid:
  channel_grid.coarsest: [2, 4]
"""


@pytest.fixture(scope="module")
def database():
    with servers.postgres(BINARIES) as url:
        yield url


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "mgspec", "study", *args]
    return subprocess.Popen(
        command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _trained(stdout: str) -> set[int]:
    return {int(n) for n in re.findall(r"^trial (\d+): .*, seed \d+ in ", stdout, re.MULTILINE)}


@pytest.mark.slow
def test_two_runs_on_one_postgresql_study_share_the_trials(tmp_path, database):
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    synthetic.write_cifar(tmp_path / "data")
    (tmp_path / "study.yaml").write_text(STUDY)
    common = ("run", "study.yaml", "--data-dir", "data", "--storage", database)
    first, second = _start(tmp_path, *common, "--out", "a"), _start(tmp_path, *common, "--out", "b")
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    for p, (out, err) in zip((first, second), outputs, strict=True):
        assert p.returncode == 0, out + err
        assert "Traceback" not in err
    mine = [_trained(out) for out, _ in outputs]
    assert not mine[0] & mine[1], "a trial was trained by both processes"
    assert mine[0] | mine[1] == {0, 1, 2, 3}

    done = subprocess.run(
        [sys.executable, "-m", "mgspec", "study", "report", "study.yaml", "--storage", database, "-f", "json"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["study"] == "shared"
    assert [t["state"] for t in report["trials"]] == ["complete"] * 4
    assert sorted((t["params"]["channel_grid.coarsest"], t["seed"]) for t in report["trials"]) == [
        (2, 0),
        (2, 1),
        (4, 0),
        (4, 1),
    ]
    # Each trial's run directory is under the --out of the process that trained it, and nowhere else.
    runs = {p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/trials/*")}
    expected = {
        f"{'a' if t['number'] in mine[0] else 'b'}/trials/{t['number']}-seed{t['seed']}" for t in report["trials"]
    }
    assert runs == expected
    for t in report["trials"]:
        assert Path(t["run_dir"]) == tmp_path / next(r for r in expected if f"/{t['number']}-seed" in r)
        assert (Path(t["run_dir"]) / "checkpoint.pt").is_file()
        assert len((Path(t["run_dir"]) / "metrics.jsonl").read_text().splitlines()) == 1
    assert len(report["points"]) == 2 and all(p["seeds"] == [0, 1] for p in report["points"])

    again = subprocess.run(
        [sys.executable, "-m", "mgspec", "study", *common, "--out", "a"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert not _trained(again.stdout)


@pytest.mark.slow
def test_an_unreachable_postgresql_is_one_clear_error(tmp_path):
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    synthetic.write_cifar(tmp_path / "data")
    (tmp_path / "study.yaml").write_text(STUDY)
    url = f"postgresql://nobody:secret@127.0.0.1:{servers.free_port()}/postgres"
    done = subprocess.run(
        [sys.executable, "-m", "mgspec", "study", "run", "study.yaml", "--data-dir", "data", "--storage", url],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot open the storage" in done.stderr and "Traceback" not in done.stderr
    assert "secret" not in done.stderr
    assert not (tmp_path / "studies").exists()


def _sweep(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    common = ("sweep", "tiny.yaml", "--train", "--data-dir", "data", "--epochs", "1", "--batch-size", "16")
    return subprocess.run(
        [sys.executable, "-m", "mgspec", *common, *args],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_two_sweeps_of_one_spec_share_a_database_under_their_own_names(tmp_path, database):
    """Sweeps are named after their spec; a second sweep of it on the same storage needs --name."""
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    synthetic.write_cifar(tmp_path / "data", train_per_batch=16, test=24)
    first = _sweep(tmp_path, "--grid", "width=1", "--storage", database, "-o", "narrow")
    assert first.returncode == 0, first.stdout + first.stderr

    clash = _sweep(tmp_path, "--grid", "width=2", "--storage", database, "-o", "wide")
    assert clash.returncode == 2, clash.stdout + clash.stderr
    assert "sweep-tiny" in clash.stderr and "grid.width" in clash.stderr, clash.stderr
    assert "Traceback" not in clash.stderr and not (tmp_path / "wide" / "trials").exists()

    named = _sweep(tmp_path, "--grid", "width=2", "--storage", database, "-o", "wide", "--name", "tiny-wide")
    assert named.returncode == 0, named.stdout + named.stderr
    assert [p.name for p in (tmp_path / "wide" / "trials").iterdir()] == ["0-seed0"]
    report = _report(tmp_path, "wide", database)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["study"] == "tiny-wide"
    assert json.loads(report.stdout)["trials"][0]["params"]["width"] == 2
    # A directory names the study whose trials ran in it; one where none ran is one clear error.
    assert json.loads(_report(tmp_path, "narrow", database).stdout)["study"] == "sweep-tiny"
    (tmp_path / "elsewhere").mkdir()
    nowhere = _report(tmp_path, "elsewhere", database)
    assert nowhere.returncode == 2 and "Traceback" not in nowhere.stderr
    assert "studies in the storage ran in elsewhere: " in nowhere.stderr  # the database is the module's
    assert "'sweep-tiny', 'tiny-wide'" in nowhere.stderr


def _report(tmp_path: Path, target: str, database: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mgspec", "study", "report", target, "--storage", database, "-f", "json"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


_HOLDER = """
import sys, time
from mgspec.study import locks
from mgspec.study import storage as stores
with locks.locked(stores.open_storage(sys.argv[1], None), None, "held"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_the_study_lock_waits_stops_when_told_and_is_free_once_its_holder_dies(database):
    """The advisory lock: a waiter polls (a worker told to stop stops while waiting), and the
    server drops the lock of a holder killed with SIGKILL."""
    import threading

    from mgspec.study import locks
    from mgspec.study import storage as stores

    storage = stores.open_storage(database, None)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, database], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"

        class Told(Exception):
            pass

        def told():
            raise Told

        with pytest.raises(Told):
            with locks.locked(storage, None, "held", told):
                pass
        got = threading.Event()

        def waiter():
            with locks.locked(storage, None, "held"):
                got.set()

        threading.Thread(target=waiter, daemon=True).start()
        assert not got.wait(2), "the lock was taken from a live holder"
        holder.kill()
        holder.wait()
        assert got.wait(20), "a killed holder's lock was not dropped"
        with locks.locked(storage, None, "other"):  # another study's lock is another lock
            pass
    finally:
        holder.kill()
