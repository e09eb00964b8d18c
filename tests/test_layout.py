"""channels_last end to end: no convolution or BatchNorm sees an NCHW tensor, forward or backward.

A hidden NCHW copy (from a reshape, a zeros_like, a strided view) makes oneDNN reorder the
tensor and run its slower NCHW kernels; this pins the layout in both backends for every family.
Gradients on maps smaller than 8x8 are exempt: on the last level (4x4 for CIFAR) autograd
accumulates the classifier's gradient in NCHW, and a reorder of a 4x4 map costs nothing.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mgspec
from mgspec import codegen
from tests.conftest import ROOT
from tests.test_codegen import load_module

SPECS = ["mgiad_cifar10", "mgnet_cifar10", "mgic_cifar10", "resnet18_cifar10", "mgnet_grouped_cifar10"]


def _layout_violations(model: nn.Module) -> list[str]:
    bad: list[str] = []
    cl = torch.channels_last

    def forward_hook(name):
        return lambda mod, args: None if args[0].is_contiguous(memory_format=cl) else bad.append(f"{name} input")

    def backward_hook(name):
        def hook(mod, grad_in, grad_out):
            g = grad_out[0]
            if g is not None and g.shape[-1] >= 8 and not g.is_contiguous(memory_format=cl):
                bad.append(f"{name} grad")

        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.BatchNorm2d):
            module.register_forward_pre_hook(forward_hook(name))
            module.register_full_backward_hook(backward_hook(name))
    x = torch.randn(2, 3, 32, 32).to(memory_format=cl).requires_grad_()
    model(x).square().sum().backward()
    return bad


@pytest.mark.parametrize("name", SPECS)
def test_channels_last_end_to_end(name, tmp_path):
    path = ROOT / "specs" / f"{name}.yaml"
    graph = mgspec.compile_graph(path)
    runtime = mgspec.build_model(graph).to(memory_format=torch.channels_last)
    generated = load_module(codegen.render(graph), name, tmp_path).create_model()
    generated = generated.to(memory_format=torch.channels_last)
    assert _layout_violations(runtime) == []
    assert _layout_violations(generated) == []
