"""torch's flop counter sees mgspec's custom ops as the convolutions they replace: a model
built with the kernels counts exactly the FLOPs of the same model without them (forward and
forward + backward, channels_last and contiguous), and its forward counts the analytic MACs x 2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import mgspec
from mgspec import kernels
from mgspec.kernels import transfer
from tests.conftest import ROOT

CL = torch.channels_last
SPECS = [
    pytest.param("mgiad_cifar10.yaml", marks=pytest.mark.slow),
    "mgiad_small_cifar10.yaml",
    pytest.param("mgnet_grouped_cifar10.yaml", marks=pytest.mark.slow),
]


def flops(model, x: torch.Tensor, backward: bool) -> int:
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        y = model(x)
        if backward:
            y.sum().backward()
    return counter.get_total_flops()


@pytest.fixture(scope="module", params=SPECS)
def models(request):
    spec = ROOT / "specs" / request.param
    torch.manual_seed(0)
    fast = mgspec.create_model(spec)
    plain = mgspec.create_model(spec, kernels=False)
    plain.load_state_dict(fast.state_dict())
    return spec, fast, plain


def test_the_kernel_models_run_the_custom_ops(models):
    spec, fast, plain = models
    custom = [m for m in fast.modules() if isinstance(m, (transfer.TransferConv2d, kernels.KernelConv2d))]
    assert custom, "the kernel-selection pass chose nothing"
    assert not any(isinstance(m, (transfer.TransferConv2d, kernels.KernelConv2d)) for m in plain.modules())


@pytest.mark.parametrize("layout", [CL, torch.contiguous_format], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_counted_flops_equal_the_model_without_kernels(models, layout, backward):
    spec, fast, plain = models
    x = torch.randn(1, 3, 32, 32).to(memory_format=layout)
    counted = flops(fast, x, backward)
    assert counted == flops(plain, x, backward)
    if not backward:
        assert counted == 2 * x.shape[0] * mgspec.count_spec(spec).macs
    kernels.set_enabled(False)  # MGSPEC_KERNELS=0: the same modules take nn.Conv2d's path
    try:
        assert flops(fast, x, backward) == counted
    finally:
        kernels.set_enabled(True)


@pytest.mark.parametrize(
    ("op", "weight_shape", "groups", "padding"),
    [
        (kernels.grouped_conv3x3, (8, 4, 3, 3), 2, 1),
        (transfer.channel_transfer, (4, 2, 1, 1), 4, 0),  # R / Pi: 2 inputs -> 1 output
        (transfer.channel_transfer, (16, 1, 1, 1), 8, 0),  # P: 1 input -> 2 outputs
    ],
)
def test_each_custom_op_counts_as_aten_convolution(op, weight_shape, groups, padding):
    x = torch.randn(3, weight_shape[1] * groups, 6, 5, requires_grad=True)
    w = torch.randn(weight_shape, requires_grad=True)
    for needs_x in (True, False):
        x.requires_grad_(needs_x)
        with FlopCounterMode(display=False) as ours:
            op(x, w, groups).sum().backward()
        with FlopCounterMode(display=False) as theirs:
            F.conv2d(x, w, padding=padding, groups=groups).sum().backward()
        assert ours.get_flop_counts() and ours.get_total_flops() == theirs.get_total_flops()
