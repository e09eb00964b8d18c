"""The grouped 3x3 convolution kernel against F.conv2d: values, gradients, layouts, autograd,
torch.compile, torch.export, a training step, and the fallback without a compiler."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import mgspec
from mgspec import kernels
from tests.conftest import ROOT

needs_kernel = pytest.mark.skipif(
    not kernels.available(), reason=f"grouped-conv kernel not built here ({kernels._build.error() or 'disabled'})"
)
CL = torch.channels_last


@contextmanager
def isa(name: str):
    """Restrict the kernel to one instruction set (empty: the best one) for the block."""
    old = os.environ.get("MGSPEC_GCONV_ISA")
    os.environ["MGSPEC_GCONV_ISA"] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ["MGSPEC_GCONV_ISA"]
        else:
            os.environ["MGSPEC_GCONV_ISA"] = old


def reference(x, w, groups, dy):
    xr = x.detach().clone().requires_grad_()
    wr = w.detach().clone().requires_grad_()
    y = F.conv2d(xr, wr, padding=1, groups=groups)
    y.backward(dy)
    return y, xr.grad, wr.grad


def kernel(x, w, groups, dy):
    xk = x.detach().clone().requires_grad_()
    wk = w.detach().clone().requires_grad_()
    y = kernels.grouped_conv3x3(xk, wk, groups)
    y.backward(dy)
    return y, xk.grad, wk.grad


@needs_kernel
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    group_size=st.sampled_from([1, 2, 4, 8, 16]),
    groups=st.integers(1, 5),
    h=st.integers(1, 9),
    w=st.integers(1, 13),
    channels_last=st.booleans(),
    instruction_set=st.sampled_from(["", "avx2", "scalar"]),
)
def test_matches_conv2d_forward_and_both_gradients(n, group_size, groups, h, w, channels_last, instruction_set):
    c = group_size * groups
    x = torch.randn(n, c, h, w)
    if channels_last:
        x = x.to(memory_format=CL)
    weight = torch.randn(c, group_size, 3, 3)
    dy = torch.randn(n, c, h, w)
    with isa(instruction_set):
        got = kernel(x, weight, groups, dy)
    want = reference(x, weight, groups, dy)
    for name, a, b in zip(("output", "input gradient", "weight gradient"), got, want, strict=True):
        scale = b.abs().max().item() + 1.0
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale, msg=lambda m, name=name: f"{name}: {m}")
    assert got[0].is_contiguous(memory_format=CL)


@needs_kernel
@pytest.mark.parametrize("group_size", [2, 4, 8, 16])
def test_wide_shapes_use_the_vector_code_and_match(group_size):
    # 32 and 48 channels: both vector widths; 11 columns: full pixel blocks plus remainders
    for c in (32, 48):
        x = torch.randn(2, c, 6, 11).to(memory_format=CL)
        weight = torch.randn(c, group_size, 3, 3)
        dy = torch.randn(2, c, 6, 11).to(memory_format=CL)
        got, want = kernel(x, weight, c // group_size, dy), reference(x, weight, c // group_size, dy)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


@needs_kernel
@pytest.mark.parametrize("group_size", [2, 4, 8, 16])
def test_gradcheck_float64(group_size):
    groups = 2
    x = torch.randn(2, group_size * groups, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(group_size * groups, group_size, 3, 3, dtype=torch.float64, requires_grad=True)
    op = lambda a, b: kernels.grouped_conv3x3(a, b, groups)
    assert torch.autograd.gradcheck(op, (x, w), fast_mode=True)
    if group_size <= 4:  # the full Jacobian too, where it is small
        assert torch.autograd.gradcheck(op, (x, w))


@needs_kernel
def test_the_kernel_is_what_runs():
    # guards against a silent fallback: the op's CPU path is the compiled library
    assert kernels.isa() in ("avx512", "avx2", "scalar")
    x = torch.randn(1, 8, 3, 3).to(memory_format=CL)
    w = torch.randn(8, 4, 3, 3)
    torch.testing.assert_close(torch.ops.mgspec_gconv.forward(x, w, 2), F.conv2d(x, w, padding=1, groups=2))


def small_model(size: int = 32) -> nn.Module:
    spec = ROOT / "specs" / "mgiad_cifar10.yaml"
    overrides = ["channel_grid.coarsest=16", f"input.size={size}"]
    return mgspec.create_model(spec, overrides, kernels=False).to(memory_format=CL)  # plain convs: use_kernel switches


@needs_kernel
def test_use_kernel_keeps_weights_state_dict_and_outputs():
    model = small_model().eval()
    keys = list(model.state_dict())
    params = [id(p) for p in model.parameters()]
    x = torch.randn(2, 3, 32, 32).to(memory_format=CL)
    with torch.no_grad():
        before = model(x)
        switched = kernels.use_kernel(model)
        after = model(x)
    assert switched > 0
    assert sum(type(m) is kernels.KernelConv2d for m in model.modules()) == switched
    assert list(model.state_dict()) == keys and [id(p) for p in model.parameters()] == params
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert kernels.restore(model) == switched
    assert not any(type(m) is kernels.KernelConv2d for m in model.modules())


@pytest.mark.slow
@needs_kernel
def test_one_sgd_step_with_and_without_the_kernel_agrees():
    # Both float32 models are compared with the same step in float64: the kernel must be as
    # accurate as oneDNN. (Directly against each other they differ in rounding, which train-mode
    # BatchNorm on 1x1 coarse maps amplifies in gradients that are mathematically zero.)
    plain = small_model(16).train()
    fast = copy.deepcopy(plain)
    exact = copy.deepcopy(plain).double()
    assert kernels.use_kernel(fast) > 0
    x = torch.randn(8, 3, 16, 16).to(memory_format=CL)
    target = torch.tensor([0, 3, 5, 9, 1, 1, 2, 7])
    start = {k: v.double() for k, v in plain.state_dict().items()}
    for model, inp in ((plain, x), (fast, x), (exact, x.double())):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        F.cross_entropy(model(inp), target).backward()
        optimizer.step()
    moved = max((exact.state_dict()[k] - v).abs().max().item() for k, v in start.items())
    assert moved > 1e-2
    want = exact.state_dict()
    for (name, a), (_, b) in zip(plain.state_dict().items(), fast.state_dict().items(), strict=True):
        error_plain = (a.double() - want[name]).abs().max().item()
        error_fast = (b.double() - want[name]).abs().max().item()
        assert error_fast <= 10 * error_plain + 1e-5, (name, error_fast, error_plain)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(16)

    def forward(self, x):
        return x + F.relu(self.bn(self.conv(x)))


@pytest.mark.slow
@needs_kernel
def test_torch_compile_trains_through_the_op():
    torch._dynamo.reset()
    model = Block()
    kernels.use_kernel(model, only_where_faster=False)
    x = torch.randn(2, 16, 8, 8).to(memory_format=CL).requires_grad_()
    compiled = torch.compile(model, fullgraph=True)
    y = compiled(x)
    y.sum().backward()
    grad_compiled = model.conv.weight.grad.clone()
    model.conv.weight.grad = None
    kernels.restore(model)
    model(x).sum().backward()
    torch.testing.assert_close(y, model(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad_compiled, model.conv.weight.grad, rtol=1e-4, atol=1e-4)


@needs_kernel
def test_torch_export_keeps_the_op():
    model = Block().eval()
    kernels.use_kernel(model, only_where_faster=False)
    x = torch.randn(2, 16, 8, 8).to(memory_format=CL)
    program = torch.export.export(model, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "mgspec.grouped_conv3x3.default" in targets
    torch.testing.assert_close(program.module()(x), model(x))


def test_disabled_means_conv2d_everywhere():
    model = Block()
    kernels.set_enabled(False)
    try:
        assert not kernels.available()
        assert kernels.use_kernel(model) == 0
        x = torch.randn(1, 16, 5, 5)
        torch.testing.assert_close(
            kernels.grouped_conv3x3(x, model.conv.weight, 4), F.conv2d(x, model.conv.weight, padding=1, groups=4)
        )
    finally:
        kernels.set_enabled(True)


@pytest.mark.slow
def test_without_a_compiler_everything_falls_back(tmp_path):
    script = textwrap.dedent(
        """
        import torch, torch.nn.functional as F
        from mgspec import kernels
        x = torch.randn(2, 8, 4, 4, requires_grad=True)
        w = torch.randn(8, 4, 3, 3, requires_grad=True)
        y = kernels.grouped_conv3x3(x, w, 2)
        y.sum().backward()
        assert torch.allclose(y, F.conv2d(x, w, padding=1, groups=2))
        model = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        print(kernels.available(), kernels.use_kernel(model), type(model).__name__)
        """
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "MGSPEC_KERNEL_CACHE": str(tmp_path / "cache")}
    env.pop("MGSPEC_KERNELS", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "0", "Conv2d"]
    messages = [line for line in proc.stderr.splitlines() if line.startswith("mgspec:")]
    assert len(messages) == 1 and "unavailable" in messages[0] and "F.conv2d" in messages[0]
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "cache").glob("*.so"))


def test_wins_is_a_cpu_float32_table():
    assert kernels.wins(64, 4, 32, 32)
    assert not kernels.wins(64, 4, 32, 32, device="cuda")
    assert not kernels.wins(64, 4, 32, 32, dtype=torch.float64)
    assert not kernels.wins(64, 3, 32, 32)


def test_eligible_only_plain_grouped_3x3_same_width():
    assert kernels.eligible(nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False))
    assert not kernels.eligible(nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=True))
    assert not kernels.eligible(nn.Conv2d(16, 16, 3, padding=1, stride=2, groups=4, bias=False))
    assert not kernels.eligible(nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False))
    assert not kernels.eligible(nn.Conv2d(16, 16, 1, groups=4, bias=False))
    assert not kernels.eligible(nn.Conv2d(16, 16, 3, padding=1, groups=1, bias=False))
    assert not kernels.eligible(nn.Conv2d(48, 48, 3, padding=1, groups=2, bias=False))  # group size 24


@needs_kernel
def test_the_runtime_backend_runs_the_chosen_convolutions_on_the_kernel():
    """create_model's default: the kernel-selection pass's slots become KernelConv2d, same function."""
    from mgspec.kernels import KernelConv2d

    spec = ROOT / "specs" / "mgiad_cifar10.yaml"
    overrides = ["channel_grid.coarsest=16", "input.size=8"]
    fast = mgspec.create_model(spec, overrides).to(memory_format=CL)
    plain = mgspec.create_model(spec, overrides, kernels=False).to(memory_format=CL)
    plain.load_state_dict(fast.state_dict())
    assert any(isinstance(m, KernelConv2d) for m in fast.modules())
    assert not any(isinstance(m, KernelConv2d) for m in plain.modules())
    x = torch.randn(4, 3, 8, 8).to(memory_format=CL)
    fast.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- channel transfers

TRANSFERS = [  # (in channels, out channels, groups): R/Pi, P, depthwise 1x1, dense from 1-2 channels
    (16, 8, 8),
    (8, 16, 8),
    (6, 6, 6),
    (2, 5, 1),
    (1, 3, 1),
]


@pytest.mark.parametrize(("cin", "cout", "groups"), TRANSFERS)
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format], ids=["channels_last", "contiguous"])
def test_channel_transfer_matches_conv2d_forward_and_both_gradients(cin, cout, groups, layout):
    from mgspec.kernels.transfer import channel_transfer

    torch.manual_seed(cin * 100 + cout)
    x = torch.randn(3, cin, 5, 7).to(memory_format=layout)
    w = torch.randn(cout, cin // groups, 1, 1)
    dy = torch.randn(3, cout, 5, 7).to(memory_format=layout)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = F.conv2d(xr, wr, groups=groups)
    ref.backward(dy)
    xk, wk = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = channel_transfer(xk, wk, groups)
    out.backward(dy)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xk.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wk.grad, wr.grad, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=layout) and xk.grad.is_contiguous(memory_format=layout)


@pytest.mark.parametrize(("cin", "cout", "groups"), TRANSFERS[:3])
def test_channel_transfer_gradcheck_float64(cin, cout, groups):
    from mgspec.kernels.transfer import channel_transfer

    x = torch.randn(2, cin, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin // groups, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: channel_transfer(a, b, groups), (x, w))


def test_channel_transfer_compiles_and_exports():
    from mgspec.kernels.transfer import TransferConv2d

    conv = nn.Conv2d(8, 4, 1, groups=4, bias=False)
    conv.__class__ = TransferConv2d
    x = torch.randn(2, 8, 4, 4).to(memory_format=CL)
    compiled = torch.compile(conv, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), F.conv2d(x, conv.weight, groups=4))
    program = torch.export.export(conv, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "mgspec.channel_transfer.default" in targets


def test_the_runtime_backend_runs_channel_transfers_on_the_op():
    """create_model's default: R, Pi and P slots become TransferConv2d; same outputs and gradients."""
    from mgspec.kernels.transfer import TransferConv2d, eligible
    from mgspec.passes.kernels import TRANSFER

    spec = ROOT / "specs" / "mgiad_small_cifar10.yaml"
    overrides = ["input.size=8"]
    fast = mgspec.create_model(spec, overrides).double()
    plain = mgspec.create_model(spec, overrides, kernels=False).double()
    plain.load_state_dict(fast.state_dict())
    marked = {n for n, s in fast.graph.graph["slots"].items() if s.impl == TRANSFER}
    assert marked == {n for n, m in fast.named_modules() if isinstance(m, TransferConv2d)}
    assert {n.rsplit(".", 1)[1] for n in marked} == {"R", "Pi", "P"}
    assert marked == {n for n, m in plain.named_modules() if eligible(m)}
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64).to(memory_format=CL)
    for model in (fast, plain):
        model(x).square().sum().backward()
    for p, q in zip(fast.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    module = next(m for m in fast.modules() if isinstance(m, TransferConv2d))
    x = torch.randn(1, module.in_channels, 2, 2, dtype=torch.float64)
    assert ops_run(module, x) == {torch.ops.mgspec.channel_transfer}
    kernels.set_enabled(False)  # MGSPEC_KERNELS=0 / --no-kernels: nn.Conv2d's own path
    try:
        assert ops_run(module, x) == {torch.ops.aten.convolution}
    finally:
        kernels.set_enabled(True)


def ops_run(module, x):
    """The counted ops a module's forward dispatches (by torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        module(x)
    return set(counter.get_flop_counts()["Global"])
