"""The Triton kernels (channel transfers, fused BatchNorm + activation + residual) against
PyTorch's reference ops, forward and backward. On CPU they run in Triton's interpreter
(where triton is installed and no GPU is present); the CUDA cases run fp32 and bf16 on a GPU
and skip cleanly without one. References are computed in float64 from the same inputs."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import mgspec
from mgspec.kernels import _triton
from tests.conftest import ROOT

CL = torch.channels_last
CUDA = torch.cuda.is_available()
needs_triton = pytest.mark.skipif(not _triton.importable(), reason="triton is not installed")
INTERPRET = _triton.interpreting()  # set before triton was imported: the interpreter runs the kernels
DEVICES = [
    pytest.param(
        "cpu", marks=[needs_triton, pytest.mark.skipif(not INTERPRET, reason="TRITON_INTERPRET=1 is not set")]
    ),
    pytest.param("cuda", marks=[needs_triton, pytest.mark.skipif(not CUDA, reason="no CUDA device")]),
]
DTYPES = [torch.float32, torch.bfloat16]
TOL = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2}


@pytest.fixture
def device(request):
    return request.param


@needs_triton
@pytest.mark.slow
@pytest.mark.skipif(INTERPRET or CUDA, reason="runs here directly")
def test_the_interpreter_cases_in_their_own_process():
    """Triton reads TRITON_INTERPRET when it is imported: the CPU cases run in a fresh process."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def close(actual, expected, dtype):
    """Relative error as torch.testing measures it, against the reference's scale."""
    tol = TOL[dtype]
    scale = expected.abs().max().item() if expected.numel() else 1.0
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol, atol=tol * max(scale, 1e-6))


def grads(fn, inputs, dy):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*leaves)
    out.backward(dy.to(out.dtype))
    return out, [t.grad for t in leaves]


@pytest.mark.parametrize("device", DEVICES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("cin", "cout", "groups"), [(16, 8, 8), (8, 16, 8), (70, 35, 35), (6, 6, 6)])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format], ids=["channels_last", "contiguous"])
def test_triton_channel_transfer(device, dtype, cin, cout, groups, layout):
    from mgspec.kernels.transfer import channel_transfer

    assert _triton.runs_on(torch.empty(0, device=device))
    x = torch.randn(3, cin, 5, 7, device=device).to(dtype=dtype, memory_format=layout)
    w = torch.randn(cout, cin // groups, 1, 1, device=device, dtype=dtype)
    dy = torch.randn(3, cout, 5, 7, device=device)
    y, (gx, gw) = grads(lambda a, b: channel_transfer(a, b, groups), (x, w), dy)
    ref, (rx, rw) = grads(lambda a, b: F.conv2d(a, b, groups=groups), (x.double(), w.double()), dy.double())
    assert y.dtype == dtype and y.is_contiguous(memory_format=layout)
    for ours, theirs in ((y, ref), (gx, rx), (gw, rw)):
        close(ours, theirs, dtype)


@pytest.mark.parametrize("device", DEVICES, indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "silu", "gelu"])
@pytest.mark.parametrize("residual", [False, True], ids=["", "residual"])
@pytest.mark.parametrize("layout", [CL, torch.contiguous_format], ids=["channels_last", "contiguous"])
def test_triton_batch_norm_act(device, dtype, act, residual, layout):
    from mgspec.kernels.fused_bn import ACTIVATIONS, batch_norm_act, fusable

    bn = torch.nn.BatchNorm2d(40).to(device)
    with torch.no_grad():
        bn.weight.normal_(), bn.bias.normal_(), bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    ref_bn = copy.deepcopy(bn).double()
    x = (torch.randn(5, 40, 9, 7, device=device) * 3 + 2).to(dtype=dtype, memory_format=layout)
    r = torch.randn(5, 40, 9, 7, device=device, dtype=dtype) if residual else None
    dy = torch.randn(5, 40, 9, 7, device=device)
    assert fusable(bn, x)
    inputs = [x, bn.weight, bn.bias] + ([r] if residual else [])
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    bn.weight, bn.bias = torch.nn.Parameter(leaves[1]), torch.nn.Parameter(leaves[2])
    y = batch_norm_act(bn, leaves[0], act, leaves[3] if residual else None)
    y.backward(dy.to(y.dtype))
    ref_leaves = [t.detach().double().requires_grad_() for t in inputs]
    ref_bn.weight, ref_bn.bias = torch.nn.Parameter(ref_leaves[1]), torch.nn.Parameter(ref_leaves[2])
    ref = ACTIVATIONS[act](ref_bn(ref_leaves[0]))
    ref = ref_leaves[3] + ref if residual else ref
    ref.backward(dy.double())
    assert y.dtype == dtype and y.is_contiguous(memory_format=layout)
    close(y, ref, dtype)
    for ours, theirs in zip(
        [bn.weight, bn.bias, leaves[0]] + leaves[3:],
        [ref_bn.weight, ref_bn.bias] + ref_leaves[:1] + ref_leaves[3:],
        strict=True,
    ):
        close(ours.grad, theirs.grad, dtype)
    close(bn.running_mean, ref_bn.running_mean, dtype)
    close(bn.running_var, ref_bn.running_var, dtype)
    assert bn.num_batches_tracked.item() == ref_bn.num_batches_tracked.item() == 1


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_runtime_model_with_triton_kernels_trains_like_without(device):
    """create_model's model (transfers and fused BN chains on Triton) against kernels=False."""
    torch.manual_seed(0)
    spec, overrides = ROOT / "specs" / "mgiad_small_cifar10.yaml", ["input.size=8"]
    fast = mgspec.create_model(spec, overrides).to(device)
    plain = mgspec.create_model(spec, overrides, kernels=False).to(device).double()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(4, 3, 8, 8, device=device).to(memory_format=CL)
    fast(x).square().sum().backward()
    plain(x.double()).square().sum().backward()
    scale = max(q.grad.abs().max().item() for q in plain.parameters() if q.grad is not None)
    for p, q in zip(fast.parameters(), plain.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(p.grad.double(), q.grad, rtol=1e-3, atol=1e-4 * scale)
    for b, c in zip(fast.buffers(), plain.buffers(), strict=True):
        torch.testing.assert_close(b.double(), c.double(), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not CUDA, reason="no CUDA device")
@needs_triton
def test_cuda_graph_capture_and_compile_of_the_kernels():
    from mgspec.kernels.transfer import TransferConv2d

    conv = torch.nn.Conv2d(16, 8, 1, groups=8, bias=False).cuda()
    conv.__class__ = TransferConv2d
    bn = torch.nn.BatchNorm2d(8).cuda()
    from mgspec.kernels.fused_bn import batch_norm_act

    def step(x):
        return batch_norm_act(bn, conv(x), "relu", x[:, :8])

    x = torch.randn(8, 16, 16, 16, device="cuda").to(memory_format=CL)
    expected = F.relu(F.batch_norm(F.conv2d(x, conv.weight, groups=8), None, None, bn.weight, bn.bias, True)) + x[:, :8]
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step(x)  # warm up (Triton compiles outside the capture)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step(x)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    compiled = torch.compile(step, fullgraph=True)
    torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)
