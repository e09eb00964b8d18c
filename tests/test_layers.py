"""Layer choices as data: every norm and activation entry carries through every stage.

Each entry of :data:`mgspec.layers.NORMS` and :data:`mgspec.layers.ACTIVATIONS` is checked on
a tiny MGiaD (stem, FAS, a channel V-cycle, head) and a tiny ResNet with a projection:
the count equals torch's parameter count, the generated source computes what the runtime
model computes (outputs and one SGD step), and what the entry claims (f(0) = 0, a weight
count) holds in torch. The generated docstrings and comments name the spec's layers.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import tokenize

import pytest
import torch

import mgspec
from mgspec import codegen
from mgspec.drawing import to_dot, to_text
from mgspec.layers import ACTIVATIONS, NORMS
from tests.conftest import ROOT
from tests.test_codegen import assert_equivalent

MGIAD = """
name: tiny_mgiad
input: {channels: 3, size: 8}
classes: 5
layers: {norm: %s, activation: %s}
resolution_grid:
  block: mgnet
  levels:
    - {channels: 8, steps: 1}
    - {channels: 16, steps: 1}
channel_grid: {group_size: 4, coarsest: 4}
"""

RESNET = """
name: tiny_resnet
input: {channels: 3, size: 8}
classes: 5
layers: {norm: %s, activation: %s}
resolution_grid:
  block: resnet_basic
  shortcut: projection
  levels:
    - {channels: 8, steps: 1}
    - {channels: 16, steps: 1}
"""

CHOICES = [(norm, "relu") for norm in NORMS] + [("batch", act) for act in ACTIVATIONS if act != "relu"]


def _spec(template: str, norm: str, act: str) -> str:
    text = template % (norm, act)
    return text.replace("layers: {norm: group,", "layers: {norm: group, norm_groups: 4,")


def prose(source: str) -> str:
    """The docstrings and comments of a Python source: the text a person reads beside the code."""
    docs = [
        ast.get_docstring(n) or ""
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
    ]
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
    return " ".join(" ".join(docs + comments).split())  # wrapped lines joined


def test_generated_prose_names_the_spec_layers_not_relu_and_bn():
    """GroupNorm and GELU in the spec: no docstring or comment says relu or bn."""
    source = mgspec.generate_source(ROOT / "specs" / "examples" / "mgiad_groupnorm_gelu.yaml")
    text = prose(source)
    assert not re.search(r"\brelu\b|\bbn\d?\b|\bbn_", text), re.findall(r".{40}\b(?:relu|bn\d?)\b.{40}", text)
    assert "gelu(gn(conv(x))): the image to f" in text
    assert "r = gelu(f - A(u)) on the finer level" in text
    assert "u <- u + gelu(gn2(B(gelu(gn1(f - A(u))))))" in text


def test_without_norm_the_prose_has_no_norm():
    text = prose(mgspec.generate_source(_spec(RESNET, "none", "silu")))
    assert "silu(conv2(silu(conv1(x))) + s)" in text and "proj(x), a strided 1x1 projection" in text
    assert not re.search(r"\b(bn|gn|relu)\d?\(", text)


@pytest.mark.parametrize("template", [MGIAD, RESNET], ids=["mgiad", "resnet"])
@pytest.mark.parametrize(("norm", "act"), CHOICES)
def test_every_layer_choice_counts_builds_and_generates_the_same_model(template, norm, act, tmp_path):
    torch.manual_seed(0)
    graph = mgspec.compile_graph(_spec(template, norm, act))
    model = mgspec.build_model(graph)
    counts = mgspec.count(graph)
    assert counts.total == sum(p.numel() for p in model.parameters())
    if NORMS[norm] is not None:
        assert counts.by_operator[NORMS[norm].operator] > 0
    assert_equivalent(graph, tmp_path, 3, 8)
    assert f"F.{act}(" in codegen.render(graph)
    assert act in to_text(graph) and to_dot(graph).count('shape="ellipse"') > 0


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_an_activation_that_claims_to_keep_zeros_maps_zero_to_zero(act):
    from mgspec.build import resolve_name

    entry = ACTIVATIONS[act]
    f = resolve_name(entry.function)
    x = torch.zeros(2, 3, 4, 4)
    if entry.keeps_zero:
        assert torch.equal(f(x), x)
    assert entry.template.format("x") == f"F.{f.__name__}(x)"


@pytest.mark.parametrize("norm", [k for k, n in NORMS.items() if n])
def test_a_norm_entry_states_its_module_weight_count(norm):
    from mgspec.build import make_module
    from mgspec.ir import Slot

    entry = NORMS[norm]
    slot = Slot("n", entry.op, 12, 12, groups=4 if entry.grouped else 1)
    module = make_module(slot)
    assert sum(p.numel() for p in module.parameters()) == entry.weights(12) == slot.weights
    x = torch.randn(2, 12, 3, 5)
    assert module(x).shape == x.shape


#: The layer choices added as table entries alone, each checked end to end below.
ADDED = [("layer", "relu"), ("batch", "hardswish")]
has_onnx = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


@pytest.mark.slow
@pytest.mark.skipif(not has_onnx, reason="onnx, onnxscript and onnxruntime are needed")
@pytest.mark.parametrize(("norm", "act"), ADDED)
def test_added_layers_export_to_onnx_and_run_in_onnxruntime(norm, act, tmp_path):
    from mgspec import deploy

    model = mgspec.create_model(_spec(MGIAD, norm, act), kernels=False)
    report = deploy.export_onnx(model, tmp_path / "m.onnx", input_shape=(3, 8, 8))
    assert "onnxruntime" in report.checks and (tmp_path / "m.onnx").is_file()


@pytest.mark.parametrize(("norm", "act"), ADDED)
def test_added_layers_are_drawn_and_counted_by_operator(norm, act):
    graph = mgspec.compile_graph(_spec(MGIAD, norm, act))
    model = mgspec.build_model(graph)
    counts = mgspec.count(graph)
    entry, activation = NORMS[norm], ACTIVATIONS[act]
    if entry is not None:
        torch_weights = sum(p.numel() for name, p in model.named_parameters() if f".{entry.op}" in name)
        assert counts.by_operator[entry.operator] == torch_weights > 0
        assert f"[{entry.op} {entry.operator}]" in to_text(graph)
        assert f"{entry.symbol}(conv(x))" in prose(codegen.render(graph))
    assert f"= {activation.op}(" in to_text(graph)


@pytest.mark.parametrize("shape", ["V", "W"])
def test_mgic_prose_names_the_cycle_the_block_runs(shape):
    text = prose(mgspec.generate_source(ROOT / "specs" / "mgic_cifar10.yaml", [f"channel_grid.cycle={shape}"]))
    other = "W" if shape == "V" else "V"
    assert f"MGIC block: x <- relu(x + {shape}(f = x, u = 0)), one channel {shape}-cycle." in text
    written = text.replace("stride-1 blocks are channel V-cycles", "")  # the spec's own description
    assert f"SiC {shape}-cycle" in written and f"{other}-cycle" not in written
