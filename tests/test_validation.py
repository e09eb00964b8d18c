"""The validation split: stratified, seed-fixed, located errors, and model selection on it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mgspec.cli.app import app
from mgspec.errors import SpecError
from mgspec.train import validation

runner = CliRunner()


def balanced(n: int = 50_000, classes: int = 10) -> torch.Tensor:
    return torch.arange(n) % classes


def test_a_tenth_of_cifar_is_exactly_5000_with_500_per_class():
    labels = balanced()
    train, val = validation.split(labels, 0.1, seed=0)
    assert len(val) == 5_000 and len(train) == 45_000
    assert torch.bincount(labels[val], minlength=10).tolist() == [500] * 10
    assert torch.bincount(labels[train], minlength=10).tolist() == [4_500] * 10


def test_split_is_disjoint_complete_and_fixed_by_the_seed():
    labels = balanced(5_000)
    state = torch.get_rng_state()
    train, val = validation.split(labels, 0.1, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(5_000))
    again = validation.split(labels, 0.1, seed=3)
    assert torch.equal(again[0], train) and torch.equal(again[1], val)
    other = validation.split(labels, 0.1, seed=4)[1]
    assert not torch.equal(other, val)
    assert validation.digest(val) == validation.digest(again[1]) != validation.digest(other)


def test_fraction_zero_holds_out_nothing():
    train, val = validation.split(balanced(100), 0.0, seed=0)
    assert len(val) == 0 and len(train) == 100


def train_args(spec, data, out, *extra):
    base = ["train", spec, "-d", "cifar10", "--data-dir", data, "--epochs", "1", "--batch-size", "16", "-o", out]
    return [str(a) for a in [*base, "--quiet", *extra]]


@pytest.mark.parametrize("value", ["-0.1", "1.0", "0.99"])
def test_bad_fractions_exit_2_located_without_traceback(tiny, tmp_path, value):
    spec, data = tiny
    out = tmp_path / "run"
    result = runner.invoke(app, train_args(spec, data, out, "--val-split", value))
    assert result.exit_code == 2, result.output
    assert "--val-split" in result.output
    assert "Traceback" not in result.output
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.slow
def test_one_epoch_with_a_split_saves_the_best_weights_and_reports_them(tiny, tmp_path):
    spec, data = tiny
    out = tmp_path / "run"
    result = runner.invoke(app, train_args(spec, data, out, "--val-split", "0.25"))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selected_on"] == "val" and summary["val_split"] == 0.25
    assert 15 <= summary["val_images"] <= 25  # a quarter of each class of the 80 training images, rounded
    assert summary["best_epoch"] == 1 and 0 <= summary["best_val_acc"] <= 1
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert summary["best_test_acc"] == row["test_acc"] and summary["best_val_acc"] == row["val_acc"]
    assert "val_loss" in row
    weights = load_file(str(out / "best.safetensors"))
    assert weights and all(isinstance(t, torch.Tensor) for t in weights.values())
    config = json.loads((out / "config.json").read_text())
    assert config["validation"]["images"] == summary["val_images"] and config["validation"]["hash"]
    refused = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "2", "--val-split", "0", "-q"])
    assert refused.exit_code == 2 and "--val-split" in refused.output and "Traceback" not in refused.output
    resumed = runner.invoke(app, ["train", "--resume", str(out), "--epochs", "2", "-q"])
    assert resumed.exit_code == 0, resumed.output
    again = json.loads((out / "summary.json").read_text())
    assert again["val_split"] == 0.25 and again["val_images"] == summary["val_images"] and again["epochs"] == 2
    assert json.loads((out / "config.json").read_text())["validation"] == config["validation"]


@pytest.mark.slow
def test_val_split_zero_selects_on_test(tiny, tmp_path):
    spec, data = tiny
    out = tmp_path / "run"
    result = runner.invoke(app, train_args(spec, data, out, "--val-split", "0"))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selected_on"] == "test" and "best_val_acc" not in summary
    assert summary["val_images"] == 0 and summary["val_split"] == 0
    assert not (out / "best.safetensors").exists()
    assert "val_acc" not in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])


def test_a_resumed_run_must_hold_out_the_same_images():
    record = {"split": 0.1, "images": 500, "hash": "abc"}
    validation.check_resume({"validation": dict(record)}, record, "run")
    with pytest.raises(SpecError, match="validation split differs") as caught:
        validation.check_resume({"validation": {**record, "hash": "other"}}, record, "run")
    assert str(caught.value.location) == "--val-split"
    with pytest.raises(SpecError):  # a run from before validation splits held nothing out
        validation.check_resume({}, record, "run")


def test_best_epoch_is_picked_on_validation_accuracy_when_there_is_one():
    best, changed = validation.update_best(None, {"epoch": 1, "test_acc": 0.5, "val_acc": 0.4})
    assert changed and best == {"epoch": 1, "test_acc": 0.5, "val_acc": 0.4}
    best, changed = validation.update_best(best, {"epoch": 2, "test_acc": 0.9, "val_acc": 0.3})
    assert not changed and best["epoch"] == 1
    best, changed = validation.update_best(best, {"epoch": 3, "test_acc": 0.2, "val_acc": 0.6})
    assert changed and best == {"epoch": 3, "test_acc": 0.2, "val_acc": 0.6}
