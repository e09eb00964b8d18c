"""Hostile run directories, options and files for the run commands: one located error, exit 2.

A run directory trained once (module fixture) is copied and tampered with: config.json,
metrics.jsonl and checkpoint.pt are mutated by hand and at random (hypothesis). Every case
must exit 2 with one ``error:`` line, no traceback, and leave config.json byte for byte as it
was. Also: a directory the user owns, two trainings into one directory, out-of-range options,
and the smaller CLI classes (FIFOs, NaN in JSON, malformed sweeps, stdin, closed pipes).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mgspec import runs
from mgspec.cli.app import app
from mgspec.train.sweep import _number
from tests.conftest import ROOT
from tests.synthetic import TINY_SPEC, write_cifar

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    spec = root / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    write_cifar(root / "data", train_per_batch=16, test=24)
    args = ["train", str(spec), "-d", "cifar10", "--data-dir", str(root / "data"), "--epochs", "1", "-q"]
    result = runner.invoke(app, [*args, "-o", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def run(trained, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(trained / "run", target)
    return target


def refused(args: list, fragment: str = "") -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]  # the machine's load
    assert lines and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    assert fragment in result.stderr, result.stderr
    return result.stderr


def resume_refused(run, fragment: str = "") -> None:
    before = (run / runs.CONFIG).read_bytes()
    refused(["train", "--resume", run, "--epochs", 2, "-q"], fragment)
    assert (run / runs.CONFIG).read_bytes() == before  # a failed resume never rewrites config.json


def _config(run) -> dict:
    return json.loads((run / runs.CONFIG).read_text())


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda c: [], "config.json"),
        (lambda c: {k: v for k, v in c.items() if k != "spec"}, "spec"),
        (lambda c: {**c, "config": {**c["config"], "lr": "abc"}}, "config.lr"),
        (lambda c: {**c, "config": {**c["config"], "lr": 0}}, "config.lr"),
        (lambda c: {**c, "config": {**c["config"], "lr": -1}}, "config.lr"),
        (lambda c: {**c, "config": {**c["config"], "batch_size": 0}}, "config.batch_size"),
        (lambda c: {**c, "config": {k: v for k, v in c["config"].items() if k != "epochs"}}, "config.epochs"),
        (lambda c: {**c, "spec": {**c["spec"], "text": 7}}, "spec.text"),
    ],
)
def test_tampered_config_is_refused_before_anything_is_touched(run, change, fragment):
    (run / runs.CONFIG).write_text(json.dumps(change(_config(run))))
    resume_refused(run, fragment)
    refused(["evaluate", run], fragment)


def test_nan_in_config_is_refused(run):
    (run / runs.CONFIG).write_text((run / runs.CONFIG).read_text().replace('"lr": 0.05', '"lr": NaN'))
    resume_refused(run, "NaN is not a JSON number")


@pytest.mark.parametrize(
    "blob, fragment",
    [
        (lambda b: b[: len(b) // 2], "cannot read checkpoint"),
        (lambda b: b"garbage" * 10, "cannot read checkpoint"),
        (lambda b: b"", "cannot read checkpoint"),
    ],
)
def test_truncated_or_garbage_checkpoint(run, blob, fragment):
    path = run / runs.CHECKPOINT
    path.write_bytes(blob(path.read_bytes()))
    resume_refused(run, fragment)


def test_checkpoint_of_another_spec_or_shape(run):
    path = run / runs.CHECKPOINT
    state = torch.load(path, weights_only=True)
    torch.save({**state, "model": {"layer.weight": torch.zeros(3)}}, path)
    resume_refused(run, "checkpoint does not fit the run")
    torch.save([1, 2, 3], path)
    resume_refused(run, "not a run checkpoint")


def test_torn_last_metrics_line_is_located(run):
    with (run / runs.METRICS).open("a") as handle:
        handle.write('{"epoch": 1, "lr": 0.0')
    resume_refused(run, "metrics.jsonl:2: not a metrics line")


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from([runs.CONFIG, runs.METRICS]),
    st.integers(0, 10_000),
    st.sampled_from([b"", b"{", b"]", b"NaN", b"-1", b'"x"', b"\xff", b"null", b"1e999", b"\x00"]),
    st.booleans(),
)
@pytest.mark.slow
def test_fuzzed_run_files_are_resumed_or_refused(run, name, at, insert, truncate):
    path = run / name
    original = path.read_bytes()
    at = min(at, len(original))
    path.write_bytes(original[:at] + insert + (b"" if truncate else original[at:]))
    before = (run / runs.CONFIG).read_bytes()
    try:
        runs.read(run)
    except runs.RunError as exc:
        assert str(exc).startswith(str(run)), exc
        resume_refused(run)
    assert (run / runs.CONFIG).read_bytes() == before
    path.write_bytes(original)


def test_a_users_own_directory_is_refused_and_kept(trained, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "summary.json").write_text('{"my": "results"}')
    args = ["train", trained / "tiny.yaml", "-d", "cifar10", "--data-dir", trained / "data", "--epochs", 1, "-q"]
    refused([*args, "-o", mine, "--lr", "1e12"], "not empty and is not a run")
    assert (mine / "config.json").read_text() == '{"my": "settings"}'
    assert (mine / "summary.json").read_text() == '{"my": "results"}'
    refused([*args, "-o", trained / "run"], "already holds a run")


def test_a_locked_run_directory_is_refused(trained, tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    args = ["train", trained / "tiny.yaml", "-d", "cifar10", "--data-dir", trained / "data", "--epochs", 1, "-q"]
    with runs.locked(target):
        refused([*args, "-o", target], "another mgspec process is training into this run directory")
    assert target.is_dir() and not any(target.iterdir())


@pytest.mark.parametrize(
    "option, fragment",
    [
        (["--seed", "99999999999999999999"], "seeds are 0 to"),
        (["--seed", "-1"], "seeds are 0 to"),
        (["--batch-size", str(10**12)], "is larger than the 50,000 images"),
    ],
)
def test_out_of_range_options(trained, tmp_path, option, fragment):
    args = ["train", trained / "tiny.yaml", "-d", "cifar10", "--data-dir", trained / "data", "--epochs", 1, "-q"]
    refused([*args, "-o", tmp_path / "out", *option], fragment)
    assert not (tmp_path / "out").exists()


def _coarse_spec(tmp_path):
    spec = tmp_path / "coarse.yaml"
    levels = "".join("    - {channels: 8, steps: 1}\n" for _ in range(6))  # 32 -> 1 pixel at the last level
    grid = "channel_grid: {group_size: 2, coarsest: 4}\n"
    spec.write_text(TINY_SPEC.split("  levels:\n")[0] + "  levels:\n" + levels + grid)
    return spec


def test_a_last_batch_of_one_at_a_1x1_batchnorm_is_skipped_and_said(trained, tmp_path):
    args = ["train", _coarse_spec(tmp_path), "-d", "cifar10", "--data-dir", trained / "data", "--epochs", 1, "-q"]
    # 80 training images (all of them: no validation split), so the last batch of 79 holds 1
    args += ["--val-split", 0, "-o", tmp_path / "out", "--batch-size", 79]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "each epoch's last batch holds 1 image" in result.stdout


def test_batch_of_one_at_a_1x1_batchnorm_is_refused(trained, tmp_path):
    spec = tmp_path / "coarse.yaml"
    levels = "".join("    - {channels: 8, steps: 1}\n" for _ in range(6))  # 32 -> 1 pixel at the last level
    spec.write_text(
        TINY_SPEC.split("  levels:\n")[0] + "  levels:\n" + levels + "channel_grid: {group_size: 2, coarsest: 4}\n"
    )
    args = ["train", spec, "-d", "cifar10", "--data-dir", trained / "data", "--epochs", 1, "-q"]
    refused([*args, "-o", tmp_path / "out", "--batch-size", 1], "a batch of 1 image per process cannot train")
    assert not (tmp_path / "out").exists()


def test_list_skips_a_fifo_without_opening_it(tmp_path):
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "specs", "mgnet_small_cifar10.yaml"), tmp_path)
    os.mkfifo(tmp_path / "pipe.yaml")
    result = runner.invoke(app, ["list", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "pipe.yaml: not a regular file" in result.stderr
    assert "mgnet_small" in result.stdout


def test_sweep_values_and_json_have_no_nan():
    assert _number("nan") == "nan" and _number("inf") == "inf" and _number("2") == 2 and _number("0.5") == 0.5
    text = runs.json_text({"a": float("nan"), "b": [float("inf"), 1.0]})
    assert "NaN" not in text and "Infinity" not in text and json.loads(text) == {"a": None, "b": [None, 1.0]}


@pytest.mark.parametrize(
    "rows, fragment",
    [
        ('[{"weights": "abc", "best_test_acc": 0.5}]', "row 0: weights must be a positive whole number"),
        ('[{"weights": 10, "best_test_acc": null}]', "row 0: best_test_acc must be a number"),
        ('[{"weights": 10, "best_test_acc": 7}]', "best_test_acc must be a number from 0 to 1"),
        ("[1, 2]", "expected a list of rows"),
        ('{"weights": 1', "not a sweep.json"),
        (b"\xff\xfe", "not a sweep.json"),
    ],
)
def test_figure7_refuses_a_malformed_sweep(tmp_path, rows, fragment):
    path = tmp_path / "sweep.json"
    path.write_bytes(rows if isinstance(rows, bytes) else rows.encode())
    refused(["paper", "--figure", "7", "--sweep", path, "-o", tmp_path / "fig.png"], fragment)
    assert not (tmp_path / "fig.png").exists()


@pytest.mark.slow
def test_export_reads_the_spec_from_stdin(tmp_path):
    spec = os.path.join(os.path.dirname(__file__), "..", "specs", "mgnet_small_cifar10.yaml")
    with open(spec) as handle:
        text = handle.read()
    result = runner.invoke(app, ["export", "-", "--onnx", str(tmp_path / "m.onnx")], input=text)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_piped_count_title_is_one_line():
    spec = os.path.join(os.path.dirname(__file__), "..", "specs", "mgiad_cifar10.yaml")
    result = runner.invoke(app, ["count", spec], env={"COLUMNS": "40"})
    first = result.stdout.splitlines()[0]
    assert first.startswith("mgiad_cifar10 (mgiad): 393,034 weights, ") and first.rstrip().endswith("32x32 image")


def test_compile_writes_every_file_or_none(tmp_path):
    specs = os.path.join(os.path.dirname(__file__), "..", "specs")
    first, second = (os.path.join(specs, name) for name in ("mgnet_small_cifar10.yaml", "mgiad_cifar10.yaml"))
    out = tmp_path / "gen"
    (out / "mgiad_cifar10.py").mkdir(parents=True)  # the second target cannot be written
    refused(["compile", first, second, "-o", out], "mgiad_cifar10.py is not a regular file")
    assert sorted(p.name for p in out.iterdir()) == ["mgiad_cifar10.py"]  # nothing else, no temporary file
    (out / "mgiad_cifar10.py").rmdir()
    result = runner.invoke(app, ["compile", first, second, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["mgiad_cifar10.py", "mgnet_small_cifar10.py"]


def test_generated_header_quotes_an_odd_spec_path(tmp_path):
    odd = tmp_path / "$(touch pwned).yaml"
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "specs", "mgnet_small_cifar10.yaml"), odd)
    result = runner.invoke(app, ["compile", str(odd), "-o", str(tmp_path / "gen")])
    assert result.exit_code == 0, result.output
    text = next((tmp_path / "gen").iterdir()).read_text()
    command = next(line for line in text.splitlines() if line.startswith("# Do not edit"))
    assert "compile '" in command and "$(touch pwned).yaml' -o" in command, command
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_sigterm_before_the_first_checkpoint_cleans_up_like_ctrl_c(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    write_cifar(tmp_path / "data", train_per_batch=2000, test=24)  # an epoch long enough to be interrupted
    out = tmp_path / "runs" / "run"
    data = str(tmp_path / "data")
    command = [sys.executable, "-m", "mgspec", "train", str(spec), "-d", "cifar10", "--data-dir", data]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*command, "--epochs", "2", "-q", "-o", str(out)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out / runs.CONFIG).exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert (out / runs.CONFIG).exists() and not (out / runs.CHECKPOINT).exists()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr.decode()
    assert b"Traceback" not in stderr
    assert not (tmp_path / "runs").exists()  # what the run created is gone, as after Ctrl-C


@settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.tuples(st.just("--seed"), st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)).map(str)),
        st.tuples(st.just("--batch-size"), st.integers(min_value=50_001).map(str)),
        st.tuples(
            st.just("--lr"),
            st.one_of(st.floats(max_value=0), st.sampled_from([float("nan"), float("inf")])).map(repr),
        ),
        st.tuples(
            st.just("--epochs"),
            st.one_of(st.integers(max_value=0).map(str), st.sampled_from(["abc", "1.5", "", "1e3", "-"])),
        ),
    )
)
def test_fuzzed_options_are_refused_before_anything_is_written(trained, tmp_path, option):
    out = tmp_path / "fuzzed"
    args = ["train", trained / "tiny.yaml", "-d", "cifar10", "--data-dir", trained / "data", "-q", "-o", out]
    result = runner.invoke(app, [str(a) for a in [*args, *option]])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and not out.exists()


def test_a_fifo_given_as_the_spec_is_refused_unopened(tmp_path):
    import subprocess
    import sys

    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "mgspec", "count", str(fifo)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 2 and "not a regular file" in result.stderr and "Traceback" not in result.stderr
