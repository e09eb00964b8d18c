"""Every counter agrees: the analytic MACs against torch's flop counter, weights against the model.

For every spec in specs/ and specs/examples/ and for drawn specs: ``count_spec(...).macs * 2``
equals what ``torch.utils.flop_counter.FlopCounterMode`` counts for one image, on contiguous
and on channels_last input, with mgspec's CPU kernels on and off; the weights equal
``sum(p.numel())``. MACs are conv and linear multiply-accumulates, so the flop counter's total
is exactly twice them (it counts nothing else that these models run).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch.utils.flop_counter import FlopCounterMode

import mgspec
from tests.conftest import ROOT, spec_id
from tests.strategies import spec_data, to_source

ALL_SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "specs" / "examples").glob("*.yaml"))
LAYOUTS = [torch.contiguous_format, torch.channels_last]


def counted_flops(model, x) -> int:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def runs_the_kernel(model) -> bool:
    from mgspec import kernels

    return kernels.available() and any(isinstance(m, kernels.KernelConv2d) for m in model.modules())


def check(source, overrides, kernels: bool, layout, request=None) -> None:
    spec, _ = mgspec.load_spec(source, overrides)
    counts = mgspec.count_spec(spec)
    model = mgspec.create_model(spec, kernels=kernels)
    assert counts.total == sum(p.numel() for p in model.parameters())
    x = torch.randn(1, spec.input.channels, *spec.input.shape).to(memory_format=layout)
    assert counted_flops(model, x) == 2 * counts.macs


@pytest.mark.slow  # 80 cases, 3 minutes on 2 cores
@pytest.mark.parametrize("layout", LAYOUTS, ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "torch"])
@pytest.mark.parametrize("path", ALL_SPECS, ids=spec_id)
def test_macs_equal_the_flop_counter(path, kernels, layout, request):
    spec, _ = mgspec.load_spec(path)
    size = 32 if (spec.stem.stride > 1 or spec.stem.maxpool) else 8
    check(path, [f"input.size={size}"], kernels, layout, request)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_data())
def test_macs_of_drawn_specs_equal_the_flop_counter(data):
    for kernels in (True, False):
        check(to_source(data), [], kernels, torch.contiguous_format)  # drawn widths (4, 8) run no kernel


def test_the_flop_counter_sees_the_grouped_kernel():
    """The custom grouped 3x3 op counts like aten.convolution (its flop formula is registered)."""
    from mgspec import kernels

    if not kernels.available():
        pytest.skip("the grouped 3x3 kernel needs a C++ compiler")
    model = mgspec.create_model("specs/mgiad_small_cifar10.yaml", kernels=True)
    assert runs_the_kernel(model)
    x = torch.randn(1, 3, 32, 32).to(memory_format=torch.channels_last)
    assert counted_flops(model, x) == 2 * mgspec.count_spec("specs/mgiad_small_cifar10.yaml").macs
