"""`mgspec export --onnx`: metadata_props that say what the model is, embedded normalisation, any input shape."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import mgspec
from mgspec.cli.app import app
from mgspec.train.data import load
from tests.synthetic import TINY_SPEC, write_cifar

runner = CliRunner()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
        reason="onnx, onnxscript and onnxruntime are not installed (pip install '.[onnx]')",
    ),
]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
KEYS = {"names", "mean", "std", "input_size", "spec", "spec_sha256", "mgspec_version", "weights", "macs", "dataset"}


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def metadata(path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def logits(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture
def run(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    data = write_cifar(tmp_path / "data", train_per_batch=16, test=24)
    cli("train", spec, "-d", "cifar10", "--data-dir", data, "--epochs", 1, "-o", tmp_path / "run", "-q")
    return spec, data, tmp_path / "run"


def test_metadata_says_what_the_model_is_and_embedding_normalisation_changes_nothing(run, tmp_path):
    spec, data, directory = run
    plain, raw = tmp_path / "plain.onnx", tmp_path / "raw.onnx"
    cli("export", spec, "--run", directory, "--onnx", plain, "--dynamic-batch")
    cli(
        "export",
        spec,
        "--run",
        directory / "model.safetensors",
        "--onnx",
        raw,
        "--dynamic-batch",
        "--embed-normalization",
    )
    meta = metadata(plain)
    assert KEYS | {"input"} <= set(meta)
    counted = json.loads(cli("count", spec, "-f", "json").stdout)
    assert json.loads(meta["names"]) == CIFAR10_NAMES and meta["dataset"] == "cifar10"
    assert json.loads(meta["mean"]) == [0.4914, 0.4822, 0.4465] and json.loads(meta["std"]) == [0.247, 0.2435, 0.2616]
    assert json.loads(meta["input_size"]) == [3, 32, 32] and meta["spec"] == "tiny_mgiad"
    assert int(meta["weights"]) == counted["total"] and int(meta["macs"]) == counted["macs"]
    assert meta["mgspec_version"] == mgspec.__version__ and meta["input"] == "normalized"
    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), framework="pt") as handle:
        assert meta["spec_sha256"] == handle.metadata()["spec_sha256"]
    raw_meta = metadata(raw)
    assert raw_meta["input"] == "raw_0_255" and {k: v for k, v in raw_meta.items() if k != "input"} == {
        k: v for k, v in meta.items() if k != "input"
    }
    test = load("cifar10", data, "test")
    pixels = test.images.numpy().astype(np.float32)
    mean = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(1, 3, 1, 1)
    normalized = ((pixels / 255 - mean) / std).astype(np.float32)
    plain_top1, raw_top1 = logits(plain, normalized).argmax(1), logits(raw, pixels).argmax(1)
    assert (plain_top1 != raw_top1).sum() == 0
    evaluated = json.loads(cli("evaluate", directory, "-f", "json").stdout)
    assert (plain_top1 == test.labels.numpy()).mean() == pytest.approx(evaluated["accuracy"])


def test_a_rectangular_spec_exports_with_its_own_height_and_width(tmp_path):
    import onnx

    out = tmp_path / "rect.onnx"
    cli("export", "mgnet_rectangular", "--onnx", out)
    dims = [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 32]
    meta = metadata(out)
    assert json.loads(meta["input_size"]) == [3, 64, 32]
    assert meta["dataset"] == "" and json.loads(meta["names"]) == [str(i) for i in range(10)]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 32)).astype(np.float32)
    assert logits(out, x).shape == (1, 10)
