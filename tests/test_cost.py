"""The cost model against what torch dispatches on CPU: kernels per pass and FLOPs."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

import mgspec
from mgspec.cost import cost

# aten ops that compute nothing: views, metadata and allocations launch no kernel.
NO_KERNEL = {
    "detach", "t", "view", "expand", "unsqueeze", "squeeze", "slice", "empty", "alias", "_unsafe_view",
    "as_strided", "transpose", "permute", "select", "_record_function_enter_new", "_record_function_exit",
}  # fmt: skip


class Record(TorchDispatchMode):
    """The aten ops that compute, in dispatch order."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in NO_KERNEL:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _true_conv_backward_flops(grad_out_shape, x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """Input gradient 2 x MACs of the forward; weight gradient 2 x MACs too (torch's counter multiplies
    the weight gradient of a grouped convolution by the number of groups)."""
    output_mask = args[7]
    n, cout, ho, wo = grad_out_shape
    forward = 2 * n * cout * w_shape[1] * w_shape[2] * w_shape[3] * ho * wo
    return forward * (int(output_mask[0]) + int(output_mask[1]))


SPECS = [
    ("specs/mgiad_small_cifar10.yaml", []),
    ("specs/mgnet_small_cifar10.yaml", []),
    ("specs/resnet20_cifar10.yaml", []),
    pytest.param("specs/mgiad_cifar10.yaml", ["channel_grid.coarsest=16"], marks=pytest.mark.slow),
    pytest.param("specs/examples/mgiad_groupnorm_gelu.yaml", ["width=0.5"], marks=pytest.mark.slow),
    ("specs/examples/mgnet_avgpool.yaml", []),
    ("specs/examples/mgnet_share_across_silu.yaml", []),
]


def _measure(spec: str, overrides: list[str], optimized: bool = True):
    torch.manual_seed(0)
    graph = mgspec.compile_graph(spec, overrides, optimized=optimized)
    model = mgspec.build_model(graph)
    s = graph.graph["spec"]
    h, w = (s.input.shape, s.input.shape) if isinstance(s.input.shape, int) else s.input.shape
    x, y = torch.randn(2, s.input.channels, h, w), torch.randint(0, s.classes, (2,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=False)
    F.cross_entropy(model(x), y).backward()  # the momentum buffers exist from here on
    opt.step()
    opt.zero_grad(set_to_none=True)
    with Record() as fwd:
        loss = F.cross_entropy(model(x), y)
    with Record() as bwd:
        loss.backward()
    with Record() as upd:
        opt.step()
    opt.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as f_fwd:
        loss = F.cross_entropy(model(x), y)
    with FlopCounterMode(display=False) as f_torch:
        F.cross_entropy(model(x), y).backward()
    opt.zero_grad(set_to_none=True)
    mapping = {torch.ops.aten.convolution_backward: _true_conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as f_step:
        F.cross_entropy(model(x), y).backward()
    return (
        graph,
        fwd.ops,
        bwd.ops,
        upd.ops,
        f_fwd.get_total_flops(),
        f_torch.get_total_flops(),
        f_step.get_total_flops(),
    )


@pytest.mark.parametrize(("spec", "overrides"), SPECS)
def test_kernels_and_flops_match_torch(spec, overrides):
    graph, fwd, bwd, upd, flops_fwd, flops_torch, flops_step = _measure(spec, overrides)
    c = cost(graph, batch=2, dtype="fp32")
    assert c.forward.kernels == len(fwd)
    assert c.backward.kernels == len(bwd)
    assert c.update.kernels == len(upd)
    assert c.forward.flops == flops_fwd
    assert c.forward.flops + c.backward.flops == flops_step
    if all(s.groups == 1 for s in graph.graph["slots"].values() if s.kind == "conv"):
        assert c.forward.flops + c.backward.flops == flops_torch  # torch's own counter, unchanged
    assert c.forward.flops == 2 * 2 * mgspec.count_spec(spec, overrides).macs


@pytest.mark.parametrize("spec", ["specs/mgiad_small_cifar10.yaml", "specs/resnet20_cifar10.yaml"])
def test_bf16_autocast_kernels_match_torch(spec):
    """Autocast's casts: each weight tensor to bf16 and its gradient back, the image, the logits."""
    torch.manual_seed(0)
    graph = mgspec.compile_graph(spec)
    model = mgspec.build_model(graph)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    with Record() as fwd, torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), y)
    with Record() as bwd:
        loss.backward()
    c = cost(graph, batch=2, dtype="bf16")
    assert (c.forward.kernels, c.backward.kernels) == (len(fwd.ops), len(bwd.ops))


class ActivationBytes(TorchDispatchMode):
    """Bytes of the batch-shaped tensors each computing op reads and writes."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch, self.total = batch, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ not in NO_KERNEL:
            for t in tree_leaves((args, kwargs, out)):
                if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == self.batch:
                    self.total += t.numel() * t.element_size()
        return out


@pytest.mark.parametrize("spec", ["specs/mgiad_small_cifar10.yaml", "specs/resnet20_cifar10.yaml"])
def test_unfused_forward_bytes_match_the_tensors_torch_touches(spec):
    """Every op reads its operands and writes its output once: the activation bytes of the forward
    pass (the part that grows with the batch) equal those of the tensors the dispatched ops take
    and return."""
    n = 5  # no channel count of these specs is 5, so batch-shaped tensors are the activations
    graph = mgspec.compile_graph(spec)
    model = mgspec.build_model(graph)
    x, y = torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,))
    with ActivationBytes(n) as seen:
        F.cross_entropy(model(x), y)
    per_n = cost(graph, 2 * n, "fp32").forward.bytes_unfused - cost(graph, n, "fp32").forward.bytes_unfused
    assert per_n == seen.total


def test_unknown_dtype_is_a_spec_error():
    with pytest.raises(mgspec.SpecError, match="fp16"):
        cost(mgspec.compile_graph("specs/mgnet_small_cifar10.yaml"), dtype="fp16")


def test_literal_graph_matches_torch():
    graph, fwd, bwd, upd, flops_fwd, _, flops_step = _measure("specs/mgiad_small_cifar10.yaml", [], optimized=False)
    c = cost(graph, batch=2, dtype="fp32")
    assert (c.forward.kernels, c.backward.kernels, c.update.kernels) == (len(fwd), len(bwd), len(upd))
    assert c.forward.flops + c.backward.flops == flops_step


def test_bytes_scale_and_fusion_saves():
    graph = mgspec.compile_graph("specs/mgiad_small_cifar10.yaml")
    small, big = cost(graph, batch=8, dtype="fp32"), cost(graph, batch=16, dtype="fp32")
    half = cost(graph, batch=8, dtype="bf16")
    assert small.step.bytes_fused < small.step.bytes_unfused
    assert small.step.kernels_fused < small.step.kernels
    assert small.activation_bytes_fused <= small.activation_bytes
    # activations double with the batch, weights and kernels do not
    assert small.step.bytes_unfused < big.step.bytes_unfused < 2 * small.step.bytes_unfused
    assert big.step.kernels == small.step.kernels
    assert big.activation_bytes == 2 * small.activation_bytes
    assert half.activation_bytes * 2 == small.activation_bytes
    assert half.step.flops == small.step.flops
    assert small.floor_s(fused=False) >= small.floor_s(fused=True) > 0


def test_count_cost_json_and_table(tmp_path):
    from typer.testing import CliRunner

    from mgspec.cli.app import app

    r = CliRunner().invoke(app, ["count", "specs/mgiad_small_cifar10.yaml", "--cost", "-f", "json", "--batch", "4"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["cost"]["batch"] == 4 and data["cost"]["dtype"] == "bf16"
    assert data["cost"]["step"]["kernels"] > data["cost"]["forward"]["kernels"] > 0
    r = CliRunner().invoke(app, ["count", "specs/mgiad_small_cifar10.yaml", "--cost", "--dtype", "fp32"])
    assert r.exit_code == 0, r.output
    assert "floor" in r.output and "kernels" in r.output
    r = CliRunner().invoke(app, ["count", "specs/mgiad_small_cifar10.yaml", "--cost", "-f", "csv"])
    assert r.exit_code == 0 and "cost,step,flops" in r.output
    r = CliRunner().invoke(app, ["count", "specs/mgiad_small_cifar10.yaml", "--cost", "--dtype", "fp16"])
    assert r.exit_code == 2 and "fp16" in r.output and "Traceback" not in r.output
