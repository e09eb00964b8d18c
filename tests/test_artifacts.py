"""model.safetensors: written by every run, readable without mgspec, self-describing, checked on load."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

import mgspec
from mgspec.cli.app import app
from mgspec.train import artifacts
from tests.synthetic import TINY_SPEC, write_cifar

runner = CliRunner()
pytestmark = pytest.mark.slow  # trains a run (seconds each)

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cli(*args, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def trained(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    data = write_cifar(tmp_path / "data", train_per_batch=16, test=24)
    run = tmp_path / "run"
    cli("train", spec, "-d", "cifar10", "--data-dir", data, "--epochs", 1, "-o", run, "-q")
    return spec, data, run


def test_run_writes_self_describing_safetensors(trained):
    spec, _, run = trained
    path = run / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:  # the safetensors library alone, no pickle
        meta = handle.metadata()
        names = set(handle.keys())
    assert set(artifacts.KEYS) <= set(meta)
    counted = json.loads(cli("count", spec, "-f", "json").stdout)
    assert meta["format"] == "mgspec" and meta["spec"] == "tiny_mgiad" and meta["dataset"] == "cifar10"
    assert int(meta["weights"]) == counted["total"] and int(meta["macs"]) == counted["macs"]
    assert meta["mgspec_version"] == mgspec.__version__
    assert json.loads(meta["class_names"]) == CIFAR10_NAMES
    assert json.loads(meta["mean"]) == [0.4914, 0.4822, 0.4465] and json.loads(meta["std"]) == [0.247, 0.2435, 0.2616]
    assert json.loads(meta["input_size"]) == [3, 32, 32]
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert int(meta["epoch"]) == 1 and float(meta["test_accuracy"]) == last["test_acc"]
    assert re.fullmatch(r"[0-9a-f]{64}", meta["spec_sha256"]) and meta["spec_text"] == TINY_SPEC
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    tensors = load_file(str(path))
    assert names == set(state) and all(torch.equal(tensors[k], state[k]) for k in state)


def test_spec_hash_is_of_the_canonical_form():
    from mgspec import describe

    plain = mgspec.load_spec(TINY_SPEC)[0]
    commented = mgspec.load_spec("# a comment\n" + TINY_SPEC.replace("classes: 10", "classes: 10  # ten"))[0]
    reordered = mgspec.load_spec(TINY_SPEC.replace("classes: 10\n", "") + "classes: 10\n")[0]
    wider = mgspec.load_spec(TINY_SPEC, ["width=2"])[0]
    assert describe.spec_sha256(plain) == describe.spec_sha256(commented) == describe.spec_sha256(reordered)
    assert describe.spec_sha256(plain) != describe.spec_sha256(wider)


def test_evaluate_from_safetensors_equals_evaluate_from_the_run(trained, tmp_path):
    spec, data, run = trained
    from_run = json.loads(cli("evaluate", run, "-f", "json").stdout)
    from_file = json.loads(cli("evaluate", run / "model.safetensors", "-f", "json").stdout)
    assert from_file == from_run
    alone = tmp_path / "elsewhere" / "weights.safetensors"  # no run directory beside it: the metadata suffices
    alone.parent.mkdir()
    shutil.copy(run / "model.safetensors", alone)
    by_itself = json.loads(cli("evaluate", alone, "--data-dir", data, "-f", "json").stdout)
    assert by_itself == from_run
    with_spec = json.loads(cli("evaluate", spec, alone, "-d", "cifar10", "--data-dir", data, "-f", "json").stdout)
    assert with_spec == from_run


def test_a_different_spec_is_refused_with_what_differs(trained, tmp_path):
    spec, data, run = trained
    alone = tmp_path / "w.safetensors"
    shutil.copy(run / "model.safetensors", alone)
    result = runner.invoke(
        app, ["evaluate", str(spec), str(alone), "-d", "cifar10", "--data-dir", str(data), "-s", "width=2"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the weights were trained from a different spec" in result.stderr
    assert "width: 1.0 in the file, 2.0 given" in result.stderr
    assert str(alone) in result.stderr


def test_bad_weights_files_are_located_errors(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    result = runner.invoke(app, ["evaluate", str(junk), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and f"error: {junk}: not a safetensors file" in result.stderr
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    result = runner.invoke(app, ["evaluate", str(foreign), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not a weights file written by mgspec" in result.stderr


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight  # one tensor, two state_dict names


def test_a_shared_tensor_is_stored_once_and_restored_tied(tmp_path):
    model = _Tied()
    path = artifacts.save(model, tmp_path / "tied.safetensors", {"format": "mgspec"})
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["a.bias", "a.weight", "b.bias"]
        assert json.loads(handle.metadata()["aliases"]) == {"b.weight": "a.weight"}
    fresh = _Tied()
    artifacts.load(fresh, path)
    assert fresh.a.weight is fresh.b.weight and torch.equal(fresh.a.weight, model.a.weight)
    assert torch.equal(fresh.b.bias, model.b.bias)
