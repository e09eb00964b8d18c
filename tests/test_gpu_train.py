"""The trainer's GPU path: device-resident batches, the eager and CUDA-graph steps, device choice,
SyncBatchNorm, CUDA RNG in checkpoints. What the CPU allows runs everywhere; the rest needs CUDA
and skips cleanly without it."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import mgspec
from mgspec.cli.app import app
from mgspec.cli.common import _warn_if_oversubscribed
from mgspec.train import recipe
from mgspec.train.batches import EpochBatches
from mgspec.train.data import dataset_info, load
from mgspec.train.device_data import DeviceBatches, DeviceSplit
from mgspec.train.distributed import Dist, convert_sync_batchnorm, resolve_device
from mgspec.train.step import EagerStep, GraphedStep, choose_cuda_graphs, make_optimizer, make_step
from tests.synthetic import TINY_SPEC, write_cifar

runner = CliRunner()
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def tiny(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    write_cifar(tmp_path / "data", train_per_batch=16, test=24)  # 80 training images, 24 test images
    return spec, tmp_path / "data"


def train_args(spec, data_dir, out, *extra):
    return ["train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir), "-o", str(out), "-q", *map(str, extra)]


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------- any device
@pytest.mark.parametrize(
    ("train", "rank", "world", "max_batches"),
    [(True, 0, 1, None), (True, 1, 2, None), (True, 0, 1, 2), (False, 0, 1, None), (False, 1, 2, None)],
)
def test_device_batches_are_the_epoch_batches(tiny, train, rank, world, max_batches):
    """The device path makes exactly the host path's batches: order, crops, flips, normalisation."""
    _, data_dir = tiny
    info = dataset_info("cifar10")
    split = load("cifar10", data_dir, "train" if train else "test")
    host = EpochBatches(split, info, 12, train=train, seed=3, epoch=2, rank=rank, world=world)
    if max_batches is not None:
        del host.batches[max_batches:]
    device = DeviceBatches(
        DeviceSplit(split, CPU), info, 12, train=train, seed=3, epoch=2, rank=rank, world=world,
        max_batches=max_batches, memory_format=torch.channels_last,
    )  # fmt: skip
    assert len(device) == len(host) > 0
    for (images, labels), i in zip(device, range(len(host)), strict=True):
        expected_images, expected_labels = host[i]
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    if train:  # the augmentation really is on: another epoch crops and flips differently
        other = DeviceBatches(DeviceSplit(split, CPU), info, 12, train=True, seed=3, epoch=3, rank=rank, world=world)
        assert not torch.equal(next(iter(other))[0], next(iter(device))[0])


def test_eager_step_is_the_plain_training_loop():
    """make_step's eager step computes what forward/backward/SGD written out does, and returns the
    batch's summed loss and correct count as device tensors."""
    torch.manual_seed(0)
    model = mgspec.create_model(mgspec.parse_text(TINY_SPEC, "tiny.yaml"))
    twin = copy.deepcopy(model)
    step = make_step(model, make_optimizer(model, 0.05, 0.9, 1e-4, CPU))
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(1)
    for n in (8, 8, 5):  # the last batch partial
        images = torch.randn(n, 3, 32, 32, generator=generator)
        labels = torch.randint(0, 10, (n,), generator=generator)
        loss_sum, correct = step(images, labels)
        optimizer.zero_grad(set_to_none=True)
        logits = twin(images)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        assert isinstance(step, EagerStep) and loss_sum.dtype == torch.float64 and loss_sum.dim() == 0
        assert loss_sum.item() == pytest.approx(loss.item() * n, rel=1e-6)
        assert correct.item() == (logits.argmax(1) == labels).sum().item()
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_graph_step_needs_cuda_and_refuses_loss_scaling():
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    example = (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="CUDA device"):
        make_step(model, optimizer, example_batch=example, cuda_graph=True)
    assert choose_cuda_graphs(None, CUDA, 1, False, False) is True, "on by default for one CUDA process"
    for args in ((CPU, 1, False, False), (CUDA, 2, False, False), (CUDA, 1, True, False), (CUDA, 1, False, True)):
        assert choose_cuda_graphs(None, *args) is False
        assert choose_cuda_graphs(False, *args) is False
        with pytest.raises(mgspec.SpecError, match="--cuda-graphs: "):
            choose_cuda_graphs(True, *args)


def test_device_auto_is_cuda_where_there_is_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert recipe("cifar10", "data").device == expected, "auto is the default, recorded as the device it chose"
    assert recipe("cifar10", "data", device="cpu").device == "cpu"
    assert Dist().sum([1.0, 2.0]) == [1.0, 2.0]


def test_cuda_only_options_are_refused_on_cpu_before_anything_is_written(tiny, tmp_path):
    spec, data_dir = tiny
    for option, message in (("--cuda-graphs", "--cuda-graphs: it needs a CUDA device"), ("--sync-bn", "--sync-bn")):
        out = tmp_path / "runs" / option.strip("-")
        result = runner.invoke(app, train_args(spec, data_dir, out, "--epochs", 1, "--device", "cpu", option))
        assert result.exit_code == 2, result.output
        assert f"error: {message}" in result.stderr and "Traceback" not in result.output
        assert not (tmp_path / "runs").exists()


def test_sync_batchnorm_conversion_keeps_the_model(tiny):
    """SyncBatchNorm replaces BatchNorm in place: the runtime model's program still reaches it,
    the state_dict is unchanged, and out of a process group it computes what BatchNorm does."""
    torch.manual_seed(0)
    model = mgspec.create_model(mgspec.parse_text(TINY_SPEC, "tiny.yaml"))
    twin = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert convert_sync_batchnorm(model) == len(norms) > 0
    assert all(type(m) is torch.nn.SyncBatchNorm for m in norms), "the same module objects, converted"
    assert list(model.state_dict()) == list(twin.state_dict())
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(x), twin(x), rtol=0, atol=0)
    for a, b in zip(model.buffers(), twin.buffers(), strict=True):  # running statistics moved alike
        assert torch.equal(a, b)


def test_busy_machine_warning_is_for_cpu_runs_only(monkeypatch, capsys):
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    _warn_if_oversubscribed(1, "cuda")
    assert capsys.readouterr().err == "", "a GPU run's CPU threads are not the work"
    _warn_if_oversubscribed(1, "cpu")
    assert "the machine is busy" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- CUDA
@needs_cuda
def test_device_batches_on_cuda_equal_the_cpu_ones(tiny):
    _, data_dir = tiny
    info, split = dataset_info("cifar10"), load("cifar10", data_dir, "train")
    on = {d: DeviceBatches(DeviceSplit(split, d), info, 12, train=True, seed=1, epoch=4) for d in (CPU, CUDA)}
    for (a, la), (b, lb) in zip(on[CPU], on[CUDA], strict=True):
        assert b.device.type == "cuda" and torch.equal(la, lb.cpu())
        torch.testing.assert_close(b.cpu(), a, rtol=1e-6, atol=1e-6)  # normalisation: float rounding only


def _cuda_model():
    torch.manual_seed(0)
    model = mgspec.create_model(mgspec.parse_text(TINY_SPEC, "tiny.yaml"), kernels=False).to(CUDA)
    return model.to(memory_format=torch.channels_last).train()


@needs_cuda
@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_graphed_step_trains_as_the_eager_step(amp_dtype, monkeypatch):
    """Capture changes no state; replays and the eager fallback for a partial batch train as the
    eager step does (float rounding apart: cuDNN may choose other algorithms)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model, twin = _cuda_model(), _cuda_model()
    before = copy.deepcopy(model.state_dict())
    generator = torch.Generator().manual_seed(2)
    batches = []
    for n in (16, 16, 16, 7, 16):
        images = torch.randn(n, 3, 32, 32, generator=generator).to(CUDA).contiguous(memory_format=torch.channels_last)
        batches.append((images, torch.randint(0, 10, (n,), generator=generator).to(CUDA)))
    graphed = make_step(
        model, make_optimizer(model, 0.05, 0.9, 1e-4, CUDA), example_batch=batches[0], cuda_graph=True,
        amp_dtype=amp_dtype,
    )  # fmt: skip
    assert isinstance(graphed, GraphedStep)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"capture changed {name}"
    eager = make_step(twin, make_optimizer(twin, 0.05, 0.9, 1e-4, CUDA), amp_dtype=amp_dtype)
    tolerance = {"rtol": 2e-2, "atol": 2e-2} if amp_dtype else {"rtol": 1e-3, "atol": 1e-4}
    for images, labels in batches:
        (loss_a, correct_a), (loss_b, correct_b) = graphed(images, labels), eager(images, labels)
        torch.testing.assert_close(loss_a, loss_b, **tolerance)
        assert abs(correct_a.item() - correct_b.item()) <= 1
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        torch.testing.assert_close(a.float(), b.float(), **tolerance, msg=name)


@needs_cuda
@pytest.mark.slow
def test_cuda_run_records_its_step_and_resumes(tiny, tmp_path):
    """A default CUDA run: data on the device, a CUDA-graph step (the 80 images in batches of 24
    leave a partial batch), CUDA RNG states in the checkpoint; a resumed run ends where an
    uninterrupted one does, and an eager run agrees with the graphed one."""
    spec, data_dir = tiny
    whole, parts, eager = tmp_path / "whole", tmp_path / "parts", tmp_path / "eager"
    common = ("--batch-size", 24, "--device", "cuda")
    for args in (
        train_args(spec, data_dir, whole, "--epochs", 2, *common),
        train_args(spec, data_dir, parts, "--epochs", 1, *common),
        ["train", "--resume", str(parts), "--epochs", "2", "-q"],
        train_args(spec, data_dir, eager, "--epochs", 2, "--no-cuda-graphs", *common),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "CUDA graph capture failed" not in result.output
    config = json.loads((whole / "config.json").read_text())
    assert config["config"]["device"] == "cuda" and config["config"]["compile"] is None
    assert config["step"] == {
        "cuda_graphs": True,
        "partial_batches": "eager",
        "compile": False,
        "data_on_device": True,
        "tf32": True,
    }
    assert json.loads((eager / "config.json").read_text())["step"]["cuda_graphs"] is False
    state = torch.load(whole / "checkpoint.pt", weights_only=True)
    assert len(state["cuda_rng"]) == 1 and state["cuda_rng"][0].dtype == torch.uint8
    for other in (parts, eager):
        for a, b in zip(metrics(whole), metrics(other), strict=True):
            for key in ("train_loss", "test_loss"):
                assert a[key] == pytest.approx(b[key], rel=1e-3), (other.name, key)
        weights = torch.load(other / "checkpoint.pt", weights_only=True)["model"]
        for name, value in state["model"].items():
            torch.testing.assert_close(value.float(), weights[name].float(), rtol=1e-3, atol=1e-3, msg=name)


@needs_cuda
@pytest.mark.slow
def test_cuda_run_with_amp_and_sync_bn(tiny, tmp_path):
    """bf16 autocast under the graph, and --sync-bn (plain BatchNorm in one process) train and
    evaluate; --sync-bn is recorded as part of the recipe."""
    spec, data_dir = tiny
    run = tmp_path / "amp"
    args = train_args(spec, data_dir, run, "--epochs", 1, "--amp", "--sync-bn", "--device", "cuda")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["amp"] == "bfloat16" and config["config"]["sync_bn"] is True
    assert config["distributed"]["sync_bn"] is True and config["step"]["cuda_graphs"] is True
    evaluated = runner.invoke(app, ["evaluate", str(run), "-f", "json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["images"] == 24
