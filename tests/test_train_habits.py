"""Training habits: runs that remember their spec, Ctrl-C, threads, mixed precision and sweeps."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
import torch
import yaml
from typer.testing import CliRunner

import mgspec
from mgspec.cli.app import app
from mgspec.errors import SpecError
from mgspec.train import recipe
from mgspec.train import trainer as trainer_module
from mgspec.train.recipe import amp_dtype, available_cores, default_threads, oversubscription, uses_loss_scaling
from tests.conftest import ROOT
from tests.synthetic import TINY_SPEC

runner = CliRunner()
OVERRIDE = "channel_grid.post_smoothing=0"


def cli(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.stderr


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_and_evaluate_read_spec_set_and_dataset_from_the_run(tiny, tmp_path):
    spec, data_dir = tiny
    run = tmp_path / "run"
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "-s", OVERRIDE, "--epochs", 1, "-o", run, "-q")
    spec.unlink()  # the run's config.json holds the spec text: the file is not needed any more
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    resumed = subprocess.run(
        [sys.executable, "-m", "mgspec", "train", "--resume", str(run), "--epochs", "2", "-q"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert [m["epoch"] for m in metrics(run)] == [1, 2]
    config = json.loads((run / "config.json").read_text())
    assert config["spec"]["overrides"] == [OVERRIDE] and config["config"]["epochs"] == 2
    result = json.loads(cli("evaluate", run, "-f", "json"))
    assert result["images"] == 24 and result["accuracy"] == metrics(run)[-1]["test_acc"]
    assert result["weights"] == mgspec.count_spec(TINY_SPEC, [OVERRIDE]).total
    # giving the spec and the --set options again is allowed; a conflict is an error
    spec.write_text(TINY_SPEC)
    assert json.loads(cli("evaluate", spec, run, "-s", OVERRIDE, "-f", "json")) == result
    assert json.loads(cli("evaluate", spec, run / "checkpoint.pt", "-f", "json")) == result
    assert "different spec" in fails("evaluate", run, "-s", "channel_grid.post_smoothing=1")
    assert "different spec" in fails("train", spec, "--resume", run, "-s", "channel_grid.post_smoothing=2")
    assert "the run trains on cifar10" in fails("train", "--resume", run, "-d", "mnist", "--epochs", 3)
    assert "no config.json" in fails("evaluate", tmp_path / "data")


def test_resume_to_epochs_already_trained_is_an_error(tiny, tmp_path):
    spec, data_dir = tiny
    run = tmp_path / "run"
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 2, "-o", run, "-q")
    before = (run / "config.json").read_bytes()
    for epochs in ("1", "2"):
        message = fails("train", "--resume", run, "--epochs", epochs)
        assert f"the run has trained 2 epochs already; --epochs {epochs} leaves nothing to do" in message
        assert "--epochs is the total" in message
    assert "trained 2 epochs already" in fails("train", "--resume", run)  # the run's own total, 2
    assert (run / "config.json").read_bytes() == before and len(metrics(run)) == 2


def test_ctrl_c_says_where_the_run_stopped_and_how_to_resume(tiny, tmp_path, monkeypatch):
    spec, data_dir = tiny
    run = tmp_path / "run"
    real_pass, calls = trainer_module._epoch_pass, []

    def interrupted_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # epoch 1's train and test passes, then Ctrl-C in epoch 2
            raise KeyboardInterrupt
        return real_pass(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "_epoch_pass", interrupted_in_epoch_two)
    result = runner.invoke(app, ["train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir), "--epochs", "3",
                                 "-o", str(run), "-q", "--val-split", "0"])  # fmt: skip
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert f"interrupted: {run} stopped after epoch 1 of 3" in result.stderr
    command = result.stderr.strip().splitlines()[-1]
    assert command == f"resume with: mgspec train --resume {run} --epochs 3"
    monkeypatch.setattr(trainer_module, "_epoch_pass", real_pass)
    cli(*command.removeprefix("resume with: mgspec ").split(), "-q")
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3]


def test_threads_default_to_the_usable_cores_and_are_recorded(tiny, tmp_path, monkeypatch):
    spec, data_dir = tiny
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == available_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert recipe("cifar10", "data").threads == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    quiet = runner.invoke(app, ["train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir), "--epochs", "1",
                                "--threads", "1", "-o", str(tmp_path / "a"), "-q"])  # fmt: skip
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
    assert json.loads((tmp_path / "a" / "config.json").read_text())["config"]["threads"] == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (available_cores() + 1.0, 0.0, 0.0))
    busy = runner.invoke(app, ["evaluate", str(tmp_path / "a"), "--threads", "1"])
    assert busy.exit_code == 0 and "warning: the machine is busy" in busy.stderr
    too_many = available_cores() + 1
    assert f"this process may use {available_cores()} cores" in fails(
        "train", spec, "-d", "cifar10", "--data-dir", data_dir, "--threads", too_many, "-o", tmp_path / "b"
    )
    assert not (tmp_path / "b").exists()


def test_oversubscription_warning():
    assert oversubscription(threads=2, cores=2, load=0.1) is None
    assert oversubscription(threads=1, cores=2, load=1.0) is None
    busy = oversubscription(threads=2, cores=2, load=1.0)
    assert "load 1.0 on 2 cores" in busy and "--threads 1" in busy
    assert oversubscription(threads=8, cores=16, load=4.0) is None


def test_amp_dtype_and_loss_scaling_decisions():
    assert amp_dtype("cpu") == "bfloat16"
    assert amp_dtype("cuda", bf16_supported=True) == "bfloat16"
    assert amp_dtype("cuda:1", bf16_supported=False) == "float16"
    assert amp_dtype("cuda", "fp16", bf16_supported=True) == "float16"
    assert amp_dtype("cuda", "bf16", bf16_supported=False) == "bfloat16"
    with pytest.raises(SpecError, match="needs --device cuda"):
        amp_dtype("cpu", "fp16")
    with pytest.raises(SpecError, match="unknown --amp-dtype"):
        amp_dtype("cpu", "int8")
    assert uses_loss_scaling("cuda", "float16")
    assert not uses_loss_scaling("cuda", "bfloat16") and not uses_loss_scaling("cpu", "bfloat16")
    assert not uses_loss_scaling("cuda", None)
    assert trainer_module.make_scaler("cpu", "bfloat16") is None
    assert recipe("cifar10", "data", amp=True).amp == "bfloat16"
    assert recipe("cifar10", "data", amp="bf16").amp == "bfloat16"
    assert recipe("cifar10", "data").amp is None


def test_a_loss_scaler_scales_the_backward_pass(tiny):
    """The float16 path: scale(loss).backward(), then step and update through the scaler."""
    spec, data_dir = tiny
    from mgspec.train.batches import EpochBatches
    from mgspec.train.data import dataset_info, load

    calls = []

    class RecordingScaler:
        def scale(self, loss):
            calls.append("scale")
            return loss * 1.0

        def step(self, optimizer):
            calls.append("step")
            optimizer.step()

        def update(self):
            calls.append("update")

    model = mgspec.create_model(spec)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    config = recipe("cifar10", data_dir, batch_size=40, channels_last=False)
    batches = EpochBatches(load("cifar10", data_dir, "train"), dataset_info("cifar10"), 40, train=True)
    trainer_module._epoch_pass(
        model, batches, config, torch.device("cpu"), trainer_module.Dist(), optimizer, scaler=RecordingScaler()
    )
    assert calls == ["scale", "step", "update"] * 2


def test_amp_trains_in_bfloat16_on_cpu(tiny, tmp_path, monkeypatch):
    spec, data_dir = tiny
    seen = []
    real = trainer_module._make_model

    def spy(run, device):
        model = real(run, device)
        model.head.fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        return model

    monkeypatch.setattr(trainer_module, "_make_model", spy)
    run = tmp_path / "amp"
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 2, "--amp", "-o", run, "-q")
    assert set(seen) == {torch.bfloat16}
    assert json.loads((run / "config.json").read_text())["config"]["amp"] == "bfloat16"
    lines = metrics(run)
    assert all(torch.isfinite(torch.tensor(m["train_loss"])) for m in lines)
    assert lines[1]["train_loss"] < lines[0]["train_loss"]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "scaler" not in state and state["model"]["stem.conv.weight"].dtype == torch.float32
    assert "keeps its recipe" in fails("train", "--resume", run, "--no-amp", "--epochs", 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_amp_on_cuda_uses_a_loss_scaler(tiny, tmp_path):
    spec, data_dir = tiny
    run = tmp_path / "fp16"
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 2, "--device", "cuda",
        "--amp-dtype", "fp16", "-o", run, "-q")  # fmt: skip
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert "scaler" in state and state["scaler"]["scale"] > 0
    assert json.loads((run / "config.json").read_text())["config"]["amp"] == "float16"
    assert all(torch.isfinite(torch.tensor(m["train_loss"])) for m in metrics(run))


def _truncated(path, n: int) -> str:
    data = yaml.safe_load(path.read_text())
    data["resolution_grid"]["levels"] = data["resolution_grid"]["levels"][:n]
    return yaml.safe_dump(data)


def test_sweep_zip_and_levels_axes(tmp_path):
    spec = ROOT / "specs" / "mgnet_cifar10.yaml"
    out = tmp_path / "s"
    cli(
        "sweep",
        spec,
        "--grid",
        "levels=2,4",
        "--zip",
        "width=1,2",
        "--zip",
        "resolution_grid.share=[A,B],[A]",
        "-o",
        out,
    )
    rows = json.loads((out / "sweep.json").read_text())
    assert [(r["levels"], r["width"], r["resolution_grid.share"]) for r in rows] == [
        (2, 1, "[A,B]"), (2, 2, "[A]"), (4, 1, "[A,B]"), (4, 2, "[A]"),
    ]  # fmt: skip
    for row in rows:
        expected = mgspec.count_spec(
            _truncated(spec, row["levels"]),
            {"width": row["width"], "resolution_grid.share": row["resolution_grid.share"]},
        )
        assert row["weights"] == expected.total and row["macs"] == expected.macs
    assert rows[3]["weights"] == mgspec.count_spec(spec, ["width=2", "resolution_grid.share=[A]"]).total
    assert "same number of values" in fails("sweep", spec, "--zip", "width=1,2", "--zip", "classes=3", "-o", out)
    assert "the spec has 4 levels" in fails("sweep", spec, "--grid", "levels=3,5", "-o", tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_sweep_trains_seeds_per_configuration(tiny, tmp_path, monkeypatch):
    spec, data_dir = tiny
    monkeypatch.setenv("COLUMNS", "80")  # piped output is not squeezed to 80 columns, whatever $COLUMNS says
    out = tmp_path / "sweep"
    text = cli("sweep", spec, "--grid", "levels=1,2", "--train", "--seeds", 2, "-d", "cifar10", "--data-dir", data_dir,
               "--epochs", 1, "-o", out)  # fmt: skip
    for number, (levels, seed) in enumerate([(1, 0), (1, 1), (2, 0), (2, 1)]):
        assert f"trial {number}: levels={levels}, seed {seed} in {out / 'trials' / f'{number}-seed{seed}'}" in text
    assert "±" in text and "best_test_acc (mean ± std)" in text
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["levels"] for r in rows] == [1, 2] and all(r["seeds"] == 2 and r["failed"] == 0 for r in rows)
    for row, names in zip(rows, (("0-seed0", "1-seed1"), ("2-seed0", "3-seed1")), strict=True):
        accs = [json.loads((out / "trials" / name / "summary.json").read_text()) for name in names]
        assert [a["seed"] for a in accs] == [0, 1]
        assert row["final_test_acc"] == pytest.approx(statistics.mean(a["final_test_acc"] for a in accs))
        assert row["final_test_acc_std"] == pytest.approx(statistics.stdev(a["final_test_acc"] for a in accs))
        assert row["best_val_acc"] == pytest.approx(statistics.mean(a["best_val_acc"] for a in accs))
        assert all(a["val_split"] == 0.1 for a in accs)  # a sweep holds out a validation split, as train does
    stored = json.loads((out / "trials" / "0-seed0" / "config.json").read_text())
    assert len(stored["spec"]["resolved"]["resolution_grid"]["levels"]) == 1
    assert len(yaml.safe_load(stored["spec"]["text"])["resolution_grid"]["levels"]) == 1
    assert (out / "sweep.png").stat().st_size > 1000


@pytest.mark.slow
def test_sigint_stops_a_real_run_and_prints_the_resume_command(tiny, tmp_path):
    import signal
    import time

    spec, data_dir = tiny
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "mgspec", "train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir),
               "--epochs", "500", "-o", str(run), "-q"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 90
    while not (run / "checkpoint.pt").exists():  # an epoch has finished
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    done = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]
    assert f"interrupted: {run} stopped after epoch {done} of 500" in stderr
    assert stderr.strip().splitlines()[-1] == f"resume with: mgspec train --resume {run} --epochs 500"


def test_train_reads_the_spec_from_stdin(tiny, tmp_path):
    _, data_dir = tiny
    run = tmp_path / "stdin-run"
    result = runner.invoke(
        app, ["train", "-", "-d", "cifar10", "--data-dir", str(data_dir), "--epochs", "1", "-o", str(run), "-q"],
        input=TINY_SPEC,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stored = json.loads((run / "config.json").read_text())["spec"]
    assert stored["path"] == "<stdin>" and stored["text"] == TINY_SPEC
    assert json.loads(cli("evaluate", run, "-f", "json"))["accuracy"] == metrics(run)[-1]["test_acc"]
