"""Training runs, resume equivalence, evaluate, seeds, sweep and DDP, on tiny synthetic data."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import mgspec
from mgspec.cli.app import app
from mgspec.train import recipe
from mgspec.train import trainer as trainer_module
from mgspec.train.sweep import pareto
from tests.conftest import ROOT, SHARED_DATA, needs_cifar
from tests.synthetic import TINY_SPEC, write_cifar, write_idx

runner = CliRunner()


def cli(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_recipe_defaults_are_the_papers():
    c = recipe("cifar10", "data")
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.schedule) == (
        400,
        128,
        0.05,
        0.9,
        1e-4,
        "cosine",
    )
    assert c.lr_at(0) == 0.05 and c.lr_at(200) == pytest.approx(0.025) and c.lr_at(399) < 1e-5
    f = recipe("fashionmnist", "data")
    assert f.schedule == "step" and [f.lr_at(e) for e in (0, 24, 25, 50)] == pytest.approx([0.05, 0.05, 0.005, 5e-4])
    assert recipe("cifar10", "data", lr=None, epochs=3).epochs == 3


def test_one_short_training_run(tiny, tmp_path):
    spec, data_dir = tiny
    run = tmp_path / "run"
    out = cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 2, "--batch-size", 16, "-o", run)
    assert "best test accuracy" in out and f"{mgspec.count_spec(spec).total:,}" in out
    lines = metrics(run)
    assert [m["epoch"] for m in lines] == [1, 2]
    assert set(lines[0]) >= {"lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "elapsed_s"}
    assert lines[1]["train_loss"] < lines[0]["train_loss"], "the tiny model learns the synthetic signal"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and set(state) >= {"model", "optimizer", "scheduler", "rng"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["weights"] == mgspec.count_spec(spec).total
    assert summary["final_test_acc"] == lines[-1]["test_acc"]
    assert summary["best_test_acc"] == max(m["test_acc"] for m in lines)
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["lr"] == 0.05 and config["spec"]["text"] == TINY_SPEC


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tiny, tmp_path, monkeypatch):
    spec, data_dir = tiny
    config = recipe("cifar10", data_dir, epochs=3, batch_size=16, lr=0.1)
    whole = trainer_module.prepare(spec, [], config, tmp_path / "whole")
    trainer_module.train(whole, progress=False)

    killed = trainer_module.prepare(spec, [], config, tmp_path / "killed")
    real_pass, calls = trainer_module._epoch_pass, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # epoch 1 train + test, then the kill during epoch 2's training
            raise KeyboardInterrupt
        return real_pass(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "_epoch_pass", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        trainer_module.train(killed, progress=False)
    monkeypatch.setattr(trainer_module, "_epoch_pass", real_pass)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    torch.manual_seed(12345)  # resuming must not depend on the global RNG state of the new process

    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 3, "--resume", tmp_path / "killed", "-q")

    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(x["momentum_buffer"], y["momentum_buffer"])
    strip = lambda ms: [{k: v for k, v in m.items() if k not in ("images_per_s", "elapsed_s")} for m in ms]
    assert strip(metrics(tmp_path / "whole")) == strip(metrics(tmp_path / "killed"))


def test_resume_refuses_a_different_spec_or_recipe(tiny, tmp_path):
    spec, data_dir = tiny
    run = tmp_path / "run"
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 1, "-o", run, "-q")
    again = runner.invoke(app, ["train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir), "-o", str(run)])
    assert again.exit_code == 2 and "already holds a run" in again.stderr
    other = runner.invoke(
        app, ["train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir), "--resume", str(run), "-s", "width=2"]
    )
    assert other.exit_code == 2 and "different spec" in other.stderr
    lr = runner.invoke(
        app, ["train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir), "--resume", str(run), "--lr", "0.2"]
    )
    assert lr.exit_code == 2 and "a resumed run keeps its recipe" in lr.stderr
    assert "Traceback" not in other.output + lr.output + again.output


def test_data_errors_leave_no_run_directory(tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            str(ROOT / "specs" / "mgiad_cifar10.yaml"),
            "-d",
            "cifar10",
            "--data-dir",
            str(tmp_path),
            "-o",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2 and "no CIFAR-10 files found" in result.stderr
    assert not (tmp_path / "run").exists()


def test_evaluate_agrees_with_the_last_epoch(tiny, tmp_path):
    spec, data_dir = tiny
    run = tmp_path / "run"
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 1, "-o", run, "-q")
    result = json.loads(
        cli("evaluate", spec, run / "checkpoint.pt", "-d", "cifar10", "--data-dir", data_dir, "-f", "json")
    )
    last = metrics(run)[-1]
    assert result["images"] == 24
    assert result["accuracy"] == last["test_acc"]
    assert result["loss"] == pytest.approx(last["test_loss"], rel=1e-5)
    # a bare state_dict works too, and a mismatching spec is a clear error
    torch.save(torch.load(run / "checkpoint.pt", weights_only=True)["model"], tmp_path / "weights.pt")
    assert "accuracy" in cli("evaluate", spec, tmp_path / "weights.pt", "-d", "cifar10", "--data-dir", data_dir)
    bad = runner.invoke(
        app, ["evaluate", str(spec), str(run), "-d", "cifar10", "--data-dir", str(data_dir), "-s", "width=2"]
    )
    assert bad.exit_code == 2 and "checkpoint does not fit the spec" in bad.stderr


def test_seeds_report_mean_and_std(tiny, tmp_path):
    spec, data_dir = tiny
    run = tmp_path / "run"
    out = cli(
        "train",
        spec,
        "-d",
        "cifar10",
        "--data-dir",
        data_dir,
        "--epochs",
        1,
        "--seeds",
        2,
        "--seed",
        5,
        "-o",
        run,
        "-q",
    )
    assert "2 seeds (5, 6)" in out and "±" in out
    report = json.loads((run / "summary.json").read_text())
    accs = [json.loads((run / f"seed-{s}" / "summary.json").read_text())["final_test_acc"] for s in (5, 6)]
    assert report["aggregate"]["final_test_acc"]["mean"] == pytest.approx(statistics.mean(accs))
    assert report["aggregate"]["final_test_acc"]["std"] == pytest.approx(statistics.stdev(accs))
    w5 = torch.load(run / "seed-5" / "checkpoint.pt", weights_only=True)["model"]
    w6 = torch.load(run / "seed-6" / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(w5["stem.conv.weight"], w6["stem.conv.weight"]), "each seed initialises differently"


def test_fashionmnist_fits_a_cifar_spec(tmp_path):
    write_idx(tmp_path / "data", train=32, test=16)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    out = cli(
        "train", spec, "-d", "fashionmnist", "--data-dir", tmp_path / "data", "--epochs", 1, "-o", tmp_path / "r", "-q"
    )
    assert "--set input.channels=1 --set input.size=28" in out
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["schedule"] == "step"
    clash = runner.invoke(
        app, ["train", str(spec), "-d", "fashionmnist", "--data-dir", str(tmp_path / "data"), "-s", "input.channels=3"]
    )
    assert clash.exit_code == 2 and "does not fit FashionMNIST" in clash.stderr


def test_sweep_counts_every_combination(tmp_path):
    spec = ROOT / "specs" / "mgiad_cifar10.yaml"
    out = tmp_path / "sweep"
    cli("sweep", spec, "--grid", "channel_grid.coarsest=4,16,64", "--grid", "channel_grid.group_size=4,8", "-o", out)
    rows = list(__import__("csv").DictReader((out / "sweep.csv").open()))
    assert len(rows) == 6
    for row in rows:
        overrides = [
            f"channel_grid.coarsest={row['channel_grid.coarsest']}",
            f"channel_grid.group_size={row['channel_grid.group_size']}",
        ]
        counts = mgspec.count_spec(spec, overrides)
        assert int(row["weights"]) == counts.total and int(row["macs"]) == counts.macs
    assert json.loads((out / "sweep.json").read_text())[0]["weights"] == 138_154
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_rejects_a_bad_combination_before_writing(tmp_path):
    result = runner.invoke(
        app,
        [
            "sweep",
            str(ROOT / "specs" / "mgiad_cifar10.yaml"),
            "--grid",
            "channel_grid.group_size=4,3",
            "-o",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 2 and "group_size" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_sweep_with_training(tiny, tmp_path):
    spec, data_dir = tiny
    out = tmp_path / "sweep"
    cli(
        "sweep",
        spec,
        "--grid",
        "channel_grid.group_size=2,4",
        "--train",
        "-d",
        "cifar10",
        "--data-dir",
        data_dir,
        "--epochs",
        1,
        "-o",
        out,
        "-q",
    )
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["channel_grid.group_size"] for r in rows] == [2, 4]
    assert all(0 <= r["best_test_acc"] <= 1 for r in rows)
    trials = sorted((out / "trials").iterdir())
    assert [t.name for t in trials] == ["0-seed0", "1-seed0"]  # a study: one run directory per trial
    assert all((t / "checkpoint.pt").is_file() for t in trials)
    assert (out / "sweep.png").stat().st_size > 1000
    # running the same sweep again trains nothing: the rows come from the finished runs, untouched
    stamps = {t: (t / "checkpoint.pt").stat().st_mtime_ns for t in trials}
    cli("sweep", spec, "--grid", "channel_grid.group_size=2,4", "--train", "-d", "cifar10", "--data-dir", data_dir,
        "--epochs", 1, "-o", out, "-q")  # fmt: skip
    assert json.loads((out / "sweep.json").read_text()) == rows
    assert {t: (t / "checkpoint.pt").stat().st_mtime_ns for t in trials} == stamps


def test_pareto_front():
    rows = [
        {"weights": 100, "best_test_acc": 0.5},
        {"weights": 200, "best_test_acc": 0.4},  # dominated
        {"weights": 300, "best_test_acc": 0.7},
        {"weights": 300, "best_test_acc": 0.6},  # dominated by the equal-size better one
        {"weights": 50, "best_test_acc": 0.2},
    ]
    assert pareto(rows) == [4, 0, 2]


def torchrun(cwd, *args, processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node N -m mgspec ARGS`` on CPU (gloo), one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command += ["-m", "mgspec", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


@pytest.mark.slow
def test_ddp_two_processes_gloo(tiny, tmp_path):
    spec, _ = tiny
    # 17 test images: rank 0 evaluates 9 (two batches of 8), rank 1 evaluates 8 (one batch)
    data_dir = tmp_path / "ddp-data"
    write_cifar(data_dir, train_per_batch=16, test=17)
    run = tmp_path / "ddp"
    train = ["train", spec, "-d", "cifar10", "--data-dir", data_dir, "--batch-size", 16, "-o", run, "-q"]
    result = torchrun(tmp_path, *train, "--epochs", 2)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("best test accuracy") == 1, "only rank 0 reports"
    lines = metrics(run)
    assert [m["epoch"] for m in lines] == [1, 2]
    # metrics are summed over both ranks: the whole test set, once
    evaluated = json.loads(cli("evaluate", spec, run, "-d", "cifar10", "--data-dir", data_dir, "-f", "json"))
    assert evaluated["images"] == 17
    assert abs(evaluated["accuracy"] - lines[-1]["test_acc"]) <= 1 / 17 + 1e-9
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 2
    # the processes are part of the run's record, and a resume under another world size is refused
    config = json.loads((run / "config.json").read_text())
    assert config["distributed"] == {"world_size": 2, "per_rank_batch": 8, "global_batch": 16, "sync_bn": False}
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["world_size"], summary["per_rank_batch"]) == (2, 8)
    alone = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "3", "-q"])
    assert alone.exit_code == 2, alone.output
    assert "trained by 2 processes, not 1" in alone.stderr and "torchrun with 2 processes" in alone.stderr
    assert [m["epoch"] for m in metrics(run)] == [1, 2], "the refused resume changed nothing"


GROUPNORM_SPEC = TINY_SPEC + "layers: {norm: group, norm_groups: 2}\n"


@pytest.mark.slow
def test_ddp_agrees_with_one_process_at_the_same_global_batch(tmp_path):
    """Two gloo ranks of 8 images train what one process does with batches of 16.

    The ranks' batch i together hold the images of one process's batch i (the epoch's permutation
    does not depend on the world size), and DDP averages the two ranks' mean gradients: the
    gradient of the mean over all 16. That is the same computation up to float rounding only
    where nothing else couples the images of a batch: MNIST is not augmented (augmentation is
    drawn per rank), and the spec uses GroupNorm (BatchNorm would normalise each rank's 8 images
    with their own statistics unless --sync-bn, which needs CUDA). So losses, accuracies and
    weights agree to float tolerance, epoch by epoch (the weights to about 3e-5 after six steps of
    lr 0.05: the rounding of a sum split over two ranks, grown by six updates).
    """
    spec = tmp_path / "gn.yaml"
    spec.write_text(GROUPNORM_SPEC)
    data_dir = write_idx(tmp_path / "mnist", train=48, test=20)
    # --no-kernels on both sides: the comparison is of DDP's arithmetic against one process's, on the
    # same torch ops (mgspec's kernels round differently; they are compared with torch's ops elsewhere).
    common = ["train", spec, "-d", "mnist", "--data-dir", data_dir, "--batch-size", 16, "--epochs", 2, "-q"]
    common += ["--no-kernels", "--val-split", 0]
    result = torchrun(tmp_path, *common, "-o", tmp_path / "two")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cli(*common, "--threads", 1, "-o", tmp_path / "one")
    two, one = metrics(tmp_path / "two"), metrics(tmp_path / "one")
    for a, b in zip(two, one, strict=True):
        for key in ("train_loss", "test_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (key, a, b)
        for key in ("train_acc", "test_acc", "lr"):
            assert a[key] == b[key], (key, a, b)
    weights = [torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["model"] for r in ("two", "one")]
    assert weights[0].keys() == weights[1].keys()
    for name, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][name], rtol=1e-4, atol=1e-4, msg=name)
    assert one[0]["train_loss"] != one[1]["train_loss"], "the runs trained"


@pytest.mark.slow
@needs_cifar
def test_training_on_the_real_cifar10_subset(tmp_path):
    """One epoch of a small MGiaD on real CIFAR-10 images beats chance on the real test images."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    run = tmp_path / "real"
    cli("train", spec, "-d", "cifar10", "--data-dir", SHARED_DATA, "--epochs", 1, "--batch-size", 64, "-o", run, "-q")
    last = metrics(run)[-1]
    assert last["test_acc"] > 0.15, last


@pytest.mark.slow
def test_loader_workers_do_not_change_the_result(tiny, tmp_path):
    spec, data_dir = tiny
    for workers in (0, 2):
        cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 1, "--workers", workers,
            "-o", tmp_path / f"w{workers}", "-q")  # fmt: skip
    a = torch.load(tmp_path / "w0" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "w2" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _loss_and_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def _float64_pair(source):
    """The same model twice in float64, where layout and fusion differences are 1e-13, not 1e-3.

    In float32, BatchNorm over small batches amplifies rounding so much that an exact layout or
    kernel change moves gradients of the tiny test model by ~1%; float64 shows the math is equal.
    """
    torch.manual_seed(0)
    a = mgspec.create_model(source).double()
    b = mgspec.create_model(source).double()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("spec_name", ["mgiad_cifar10", "mgnet_cifar10", "mgic_cifar10", "resnet20_cifar10"])
def test_channels_last_computes_the_same_function(spec_name):
    source = mgspec.load_source(ROOT / "specs" / f"{spec_name}.yaml", ["input.size=16"])
    nchw, last = _float64_pair(source)
    last = last.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    loss_a, grads_a = _loss_and_grads(nchw, x, y)
    loss_b, grads_b = _loss_and_grads(last, x.to(memory_format=torch.channels_last), y)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-12, atol=1e-12)
    assert grads_a.keys() == grads_b.keys()
    for key in grads_a:
        torch.testing.assert_close(grads_b[key], grads_a[key], rtol=1e-9, atol=1e-11)


def test_trainer_runs_channels_last_by_default(tiny, tmp_path, monkeypatch):
    spec, data_dir = tiny
    seen = []
    real = trainer_module._make_model

    def spy(run, device):
        model = real(run, device)
        seen.append(model.levels.l1.cycle.A.weight.is_contiguous(memory_format=torch.channels_last))
        return model

    monkeypatch.setattr(trainer_module, "_make_model", spy)
    config = recipe("cifar10", data_dir, epochs=1, batch_size=16)
    trainer_module.train(trainer_module.prepare(spec, [], config, tmp_path / "cl"), progress=False)
    config = recipe("cifar10", data_dir, epochs=1, batch_size=16, channels_last=False)
    trainer_module.train(trainer_module.prepare(spec, [], config, tmp_path / "nchw"), progress=False)
    assert seen == [True, False]
    first = [metrics(tmp_path / d)[0]["train_loss"] for d in ("cl", "nchw")]
    assert first[0] == pytest.approx(first[1], rel=1e-2)  # float32 drift over the epoch; exactness: float64 test


@pytest.mark.slow
def test_compiled_model_computes_the_same_function():
    source = mgspec.parse_text(TINY_SPEC)
    eager, compiled = _float64_pair(source)
    compiled = torch.compile(compiled.to(memory_format=torch.channels_last))
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    y = torch.arange(8)
    loss_a, grads_a = _loss_and_grads(eager, x, y)
    loss_b, grads_b = _loss_and_grads(compiled, x.to(memory_format=torch.channels_last), y)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-10, atol=1e-10)
    for key in grads_a:
        torch.testing.assert_close(grads_b["_orig_mod." + key], grads_a[key], rtol=1e-8, atol=1e-10)


def test_train_compile_option_compiles(tiny, tmp_path, monkeypatch):
    """--compile hands the model to torch.compile (the compiled numerics are tested above)."""
    spec, data_dir = tiny
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled.append(model) or model)
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 1, "--compile", "-o", tmp_path / "c", "-q")
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 1, "-o", tmp_path / "auto", "-q")
    assert len(compiled) == 1, "on with --compile; off by default for a 5-step run"


def test_compile_and_channels_last_defaults():
    c = recipe("cifar10", "data")
    assert c.channels_last is True
    assert c.compile_enabled(steps=400 * 391) and not c.compile_enabled(steps=100)
    # on CUDA it is off: measured on an H200, compiling MGiaD took 80-110 s and its step was slower
    assert not recipe("cifar10", "data", device="cuda").compile_enabled(steps=400 * 391)
    assert not recipe("cifar10", "data", compile=False).compile_enabled(steps=10**6)
    assert recipe("cifar10", "data", compile=True).compile_enabled(steps=1)


def test_train_download_fetches_checks_and_trains(tmp_path, monkeypatch):
    """--download end to end, served from a local archive (the tests run offline)."""
    import hashlib
    import tarfile

    from mgspec.train import download as download_module

    folder = write_cifar(tmp_path / "source", train_per_batch=8, test=8)
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    resource = download_module.Resource(archive.as_uri(), md5, extract=True)
    monkeypatch.setitem(download_module.RESOURCES, "cifar10", (resource,))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    data_dir = tmp_path / "data"
    out = cli(
        "train", spec, "-d", "cifar10", "--data-dir", data_dir, "--download", "--epochs", 1, "-o", tmp_path / "r", "-q"
    )
    assert "downloaded, checksum ok" in out
    assert (data_dir / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert len(metrics(tmp_path / "r")) == 1
    monkeypatch.setitem(
        download_module.RESOURCES, "cifar10", (download_module.Resource(archive.as_uri(), "0" * 32, True),)
    )
    (data_dir / "cifar-10-python.tar.gz").unlink()
    bad = runner.invoke(app, ["train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir), "--download",
                              "-o", str(tmp_path / "r2")])  # fmt: skip
    assert bad.exit_code == 2 and "checksum mismatch" in bad.stderr and not (tmp_path / "r2").exists()


def test_resume_drops_metrics_of_an_epoch_the_checkpoint_lacks(tiny, tmp_path):
    """A crash between the metrics line and the checkpoint of an epoch: that epoch is redone once."""
    spec, data_dir = tiny
    run = tmp_path / "run"
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 1, "-o", run, "-q")
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({**metrics(run)[0], "epoch": 2, "test_acc": -1.0}) + "\n")
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--epochs", 2, "--resume", run, "-q")
    lines = metrics(run)
    assert [m["epoch"] for m in lines] == [1, 2] and lines[1]["test_acc"] >= 0


def train_args(spec, data_dir, run, *extra) -> list[str]:
    return ["train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir), "-o", str(run), "-q", *map(str, extra)]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--device", "cuda:99"], "--device cuda:99: "),
        (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0, not nan"),
        (["--lr", "inf"], "--lr must be a finite positive number, not inf"),
        (["--lr", "nan"], "--lr must be a finite positive number, not nan"),
        (["--huge"], "GiB, more than the"),
    ],
    ids=["gpu", "cuda99", "wd_nan", "lr_inf", "lr_nan", "too_large"],
)
def test_failed_train_start_leaves_nothing_behind(tiny, tmp_path, extra, message):
    spec, data_dir = tiny
    if extra == ["--huge"]:  # about 19 billion weights: counted in an instant, never allocated
        spec, extra = tmp_path / "huge.yaml", []
        spec.write_text(
            "name: huge\nclasses: 10\nresolution_grid:\n  block: resnet_basic\n"
            "  levels: [{channels: 16384, steps: 4}]\n"
        )
    run = tmp_path / "runs" / "run"
    result = runner.invoke(app, train_args(spec, data_dir, run, "--epochs", 1, "--batch-size", 16, *extra))
    assert result.exit_code == 2, result.output
    assert unwarned(result.stderr).startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_cuda_without_cuda_leaves_nothing_behind(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    spec, data_dir = tiny
    result = runner.invoke(app, train_args(spec, data_dir, tmp_path / "run", "--epochs", 1, "--device", "cuda"))
    assert result.exit_code == 2 and "CUDA is not available" in result.stderr
    assert not (tmp_path / "run").exists()


def diverging_pass(real, epoch_with_nan: int):
    calls = []

    def epoch_pass(*args, **kwargs):
        loss, acc, seen = real(*args, **kwargs)
        calls.append(1)
        if (len(calls) + 1) // 2 >= epoch_with_nan:  # train and test pass of that epoch and later
            loss = float("nan")
        return loss, acc, seen

    return epoch_pass


def unwarned(stderr: str) -> str:
    """stderr without the oversubscription warning a busy test machine adds before a run starts."""
    lines = stderr.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("warning: the machine is busy"))


@pytest.mark.slow
def test_a_diverged_run_stops_with_the_last_good_epoch_saved(tiny, tmp_path, monkeypatch):
    spec, data_dir = tiny
    run = tmp_path / "run"
    monkeypatch.setattr(trainer_module, "_epoch_pass", diverging_pass(trainer_module._epoch_pass, 2))
    result = runner.invoke(app, train_args(spec, data_dir, run, "--epochs", 3, "--batch-size", 16, "--val-split", 0))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert unwarned(result.stderr).startswith(f"error: {run}: training diverged in epoch 2: train loss nan")
    assert "--resume" in result.stderr
    assert [m["epoch"] for m in metrics(run)] == [1]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not (run / "summary.json").exists()
    monkeypatch.undo()
    cli("train", spec, "-d", "cifar10", "--data-dir", data_dir, "--resume", run, "--epochs", 2, "-q")
    assert [m["epoch"] for m in metrics(run)] == [1, 2]


def test_a_run_diverging_in_its_first_epoch_leaves_nothing(tiny, tmp_path, monkeypatch):
    spec, data_dir = tiny
    monkeypatch.setattr(trainer_module, "_epoch_pass", diverging_pass(trainer_module._epoch_pass, 1))
    result = runner.invoke(
        app, train_args(spec, data_dir, tmp_path / "run", "--epochs", 2, "--batch-size", 16, "--val-split", 0)
    )
    assert result.exit_code == 2 and "training diverged in epoch 1" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_huge_learning_rate_stops_and_metrics_stay_json(tiny, tmp_path):
    spec, data_dir = tiny
    run = tmp_path / "run"
    result = runner.invoke(app, train_args(spec, data_dir, run, "--epochs", 4, "--batch-size", 16, "--lr", 1e6))
    assert result.exit_code == 2 and "training diverged" in result.stderr, result.output
    if (run / "metrics.jsonl").exists():
        for line in (run / "metrics.jsonl").read_text().splitlines():
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


def test_evaluate_refuses_a_bad_device_and_a_model_too_large(tiny, tmp_path):
    spec, data_dir = tiny
    args = ["evaluate", str(spec), str(tmp_path / "none.pt"), "-d", "cifar10", "--data-dir", str(data_dir)]
    gpu = runner.invoke(app, [*args, "--device", "gpu"])
    assert gpu.exit_code == 2 and unwarned(gpu.stderr).startswith("error: unknown device 'gpu'")
    huge = tmp_path / "huge.yaml"  # 9.7 trillion weights, counted but never allocated
    huge.write_text(
        "name: huge\nclasses: 10\nresolution_grid:\n  block: resnet_basic\n  levels: [{channels: 16384, steps: 256}]\n"
    )
    big = runner.invoke(app, ["evaluate", str(huge), *args[2:]])
    assert big.exit_code == 2 and "GiB, more than the" in big.stderr, big.output
