"""Deployment: BatchNorm folding on the exported graph, and `mgspec export --onnx` end to end."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch
from typer.testing import CliRunner

import mgspec
from mgspec import deploy
from mgspec.cli.app import app
from tests.conftest import ROOT

runner = CliRunner()
MGIAD = "specs/mgiad_cifar10.yaml"
SMALL = ["channel_grid.coarsest=16", "input.size=8"]
has_exporter = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxscript") is not None
has_runtime = importlib.util.find_spec("onnxruntime") is not None
needs_exporter = pytest.mark.skipif(not has_exporter, reason="onnx/onnxscript not installed (pip install '.[onnx]')")
needs_runtime = pytest.mark.skipif(not (has_exporter and has_runtime), reason="onnxruntime not installed")


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.slow
def test_folding_batchnorm_keeps_outputs_and_unshares_per_application():
    model = mgspec.create_model(MGIAD, SMALL).eval()
    for module in model.modules():  # non-trivial statistics, or folding is nearly the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(3, 3, 8, 8)
    graph, folded = deploy.inference_graph(model, x)
    bns = [n for n in graph.graph.nodes if n.target is torch.ops.aten.batch_norm.default]
    convs = [n for n in graph.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert folded > 0 and folded + len(bns) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # every BatchNorm that directly follows a convolution with no other user is gone
    assert not [n for n in bns if n.args[0].target is torch.ops.aten.conv2d.default and len(n.args[0].users) == 1]
    assert sum(n.args[2] is not None for n in convs) == folded
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), rtol=1e-4, atol=1e-5)


def test_export_help():
    result = runner.invoke(app, ["export", "--help"])
    assert result.exit_code == 0
    assert "Usage: mgspec export" in re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)


def _run_dir(tmp_path, spec, overrides):
    model = mgspec.create_model(spec, overrides)
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "epoch": 1}, run / "checkpoint.pt")
    from mgspec import runs, train

    # What a run records (its spec, overrides and recipe); the 8x8 input fits no dataset, so the
    # record is made for the spec as shipped and its overrides are the run's.
    record = train.prepare(spec, [], train.recipe("cifar10", tmp_path / "data"), tmp_path / "new").record
    record["spec"]["overrides"] = overrides
    runs.write_json(run / "config.json", record)
    return run, model.eval()


@pytest.mark.slow
@needs_runtime
def test_export_onnx_end_to_end_matches_pytorch(tmp_path):
    import onnx
    import onnxruntime as ort

    spec = "specs/mgnet_grouped_cifar10.yaml"
    run, model = _run_dir(tmp_path, spec, ["input.size=8"])
    out = tmp_path / "model.onnx"
    # the run's recorded overrides are used: no --set needed
    result = runner.invoke(app, ["export", spec, "--run", str(run), "--onnx", str(out), "--dynamic-batch"])
    assert result.exit_code == 0, result.output
    assert "BatchNorms folded" in result.stdout and "ONNX Runtime" in result.stdout
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [deploy.DEFAULT_OPSET]
    assert sum(n.op_type == "BatchNormalization" for n in proto.graph.node) < sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()
    )
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 3, 8, 8)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-4, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "run"]  # no temporary files left


@pytest.mark.slow
@needs_exporter
def test_export_pins_the_opset_and_fixed_batch(tmp_path):
    import onnx

    out = tmp_path / "small.onnx"
    result = runner.invoke(
        app, ["export", "specs/mgnet_small_cifar10.yaml", "--set", "input.size=8", "--onnx", str(out), "--opset", "19",
              "--batch-size", "2"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [19]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "no/such/run"], "no such checkpoint"),
        (["--run", "WRONG"], "checkpoint does not fit the spec"),
        (["--onnx-dir", "no/such/dir"], "no such directory"),
    ],
)
def test_export_user_errors_exit_2_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "model.onnx"
    if args[0] == "--onnx-dir":
        out, args = tmp_path / "no" / "such" / "model.onnx", []
    if args and args[1] == "WRONG":
        wrong = tmp_path / "wrong.pt"
        torch.save(mgspec.create_model("specs/mgnet_small_cifar10.yaml").state_dict(), wrong)
        args = ["--run", str(wrong)]
    result = runner.invoke(app, ["export", MGIAD, "--set", "input.size=8", "--onnx", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*") if p.suffix == ".onnx"]
