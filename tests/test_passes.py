"""The optimisation passes: what they remove, and that they never change the function."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import mgspec
from mgspec import passes
from mgspec.ir import node, slots, used_slots
from tests.conftest import ROOT, SPECS, spec_id
from tests.strategies import spec_data, to_source

S = ROOT / "specs"


def applications(graph, slot: str) -> int:
    return sum(1 for n in graph.nodes if node(graph, n).slot == slot)


def assert_same_function(literal, optimized, cin: int, size: int | list[int], batch: int = 3) -> None:
    """Equal outputs (train and eval) and equal parameters after one SGD step, in float64.

    A slot whose every literal application was to zeros is unused once they are folded away,
    and the optimised model does not create it: its gradient was exactly zero in the literal
    model, so it can never influence an output. Every other weight is in both, in one order.
    """
    a = mgspec.build_model(literal).double()
    b = mgspec.build_model(optimized).double()
    folded_away = used_slots(literal) - used_slots(optimized)
    assert set(optimized.graph["dropped_slots"]) == folded_away
    kept = {k: v for k, v in a.state_dict().items() if k.rpartition(".")[0] not in folded_away}
    assert list(b.state_dict()) == list(kept)
    b.load_state_dict(kept)
    x = torch.randn(batch, cin, *((size, size) if isinstance(size, int) else size), dtype=torch.float64)
    target = torch.randint(0, literal.graph["spec"].classes, (batch,))
    for model in (a, b):
        torch.nn.functional.cross_entropy(model(x), target).backward()
    for name, p in a.named_parameters():
        if name.rpartition(".")[0] in folded_away:
            assert not p.grad.any(), f"{name} was applied to more than zeros"
    for model in (a, b):
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4).step()
    for (key, va), vb in zip(
        ((k, v) for k, v in a.state_dict().items() if k.rpartition(".")[0] not in folded_away),
        b.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(vb, va, rtol=1e-12, atol=1e-12, msg=key)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_passes_keep_the_function_on_shipped_specs(path):
    literal = mgspec.compile_graph(path, ["input.size=8"], optimized=False)
    assert_same_function(literal, passes.optimize(literal), 3, 8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_data())
def test_passes_keep_the_function_on_drawn_specs(data):
    literal = mgspec.compile_graph(to_source(data), optimized=False)
    assert_same_function(literal, passes.optimize(literal), data["input"]["channels"], data["input"]["size"])


# MACs per 32x32 image: literal, after zero folding, after CSE (the duplicated convolutions
# are A'(u') of the FAS restriction and A_{k+1}(u_c) of the channel coarse correction).
MACS = {
    "mgnet_cifar10": (691_644_928, 653_896_192, 568_961_536),  # CSE: 84.9M of 653.9M, 13.0%
    "mgnet_small_cifar10": (52_568_704, 50_209_408, 45_490_816),  # 9.4%
    "mgiad_cifar10": (369_349_120, 331_600_384, 316_928_512),  # 14.7M, 4.4%; literal = the "370M" hand count
    "mgic_cifar10": (415_717_376, 402_151_424, 377_600_000),  # 6.1%
    "resnet18_cifar10": (555_422_720, 555_422_720, 555_422_720),  # nothing to remove
}


@pytest.mark.parametrize("name", MACS)
def test_what_each_pass_removes(name):
    counts = mgspec.count_spec(S / f"{name}.yaml")
    literal = mgspec.count_spec(S / f"{name}.yaml", optimized=False)
    assert [p["name"] for p in counts.passes] == ["fold zeros", "CSE"]
    steps = (counts.passes[0]["macs_before"], counts.passes[0]["macs_after"], counts.passes[1]["macs_after"])
    assert steps == MACS[name]
    assert literal.macs == MACS[name][0] and counts.macs == MACS[name][2]
    assert literal.total == counts.total  # passes remove work, never weights
    assert literal.passes == []


def test_mgiad_cK16_cse_share():
    counts = mgspec.count_spec(S / "mgiad_cifar10.yaml", ["channel_grid.coarsest=16"])
    folded, optimized = counts.passes[1]["macs_before"], counts.passes[1]["macs_after"]
    assert folded - optimized == 7_759_872
    assert round(100 * (folded - optimized) / folded, 1) == 11.7


def test_cse_removes_the_duplicated_coarse_A():
    literal = mgspec.compile_graph(S / "mgnet_small_cifar10.yaml", optimized=False)
    optimized = mgspec.compile_graph(S / "mgnet_small_cifar10.yaml")
    # Literal: A_2 in the FAS restriction, in each of 3 steps, and as A_fine into level 3.
    assert applications(literal, "levels.l2.A") == 5
    assert applications(optimized, "levels.l2.A") == 4
    mgiad = mgspec.compile_graph(S / "mgiad_cifar10.yaml")
    # Channel level 2 of l3: the parent's f_c already applied A_{k+1}(u_c); the coarse pre-step reuses it.
    assert applications(mgiad, "levels.l3.cycle.coarse.A") == 3  # f_c of level 1, the step's r after pre, post
    assert (
        applications(mgspec.compile_graph(S / "mgiad_cifar10.yaml", optimized=False), "levels.l3.cycle.coarse.A") == 4
    )


def test_zero_folding_leaves_no_zero_and_skips_A_of_zero():
    literal = mgspec.compile_graph(S / "mgnet_cifar10.yaml", optimized=False)
    optimized = mgspec.compile_graph(S / "mgnet_cifar10.yaml")
    assert sum(node(literal, n).op == "zero" for n in literal.nodes) == 1
    assert not any(node(optimized, n).op == "zero" for n in optimized.nodes)
    # A_1 applied in step 2 and as A_fine in the FAS restriction, not to u = 0 in step 1.
    assert applications(literal, "levels.l1.A") == 3
    assert applications(optimized, "levels.l1.A") == 2


def test_optimize_leaves_its_input_alone_and_verifies_each_pass():
    literal = mgspec.compile_graph(S / "mgiad_cifar10.yaml", optimized=False)
    before = (list(literal.nodes(data=True)), list(literal.edges(data=True)), literal.graph["blocks"])
    snapshot = copy.deepcopy(before)
    optimized = passes.optimize(literal)
    assert (list(literal.nodes(data=True)), list(literal.edges(data=True)), literal.graph["blocks"]) == snapshot
    assert len(optimized) < len(literal)
    assert slots(optimized) == slots(literal)

    def breaks_the_graph(graph):
        graph.remove_node(next(n for n in graph.nodes if node(graph, n).op == "relu"))
        return graph

    with pytest.raises(mgspec.SpecError, match="do not mirror its operands"):
        passes.optimize(literal, (("broken", breaks_the_graph),))


def test_bn_is_never_merged():
    """BatchNorm updates its running statistics at every application in training."""
    from mgspec.ops import PURE_OPS

    assert "bn" not in PURE_OPS


def test_kernel_selection_marks_the_grouped_3x3_convolutions_only():
    """A backend pass: the slots mgspec's kernel computes and wins on, and nothing else changes."""
    from mgspec.ir import copy as copy_graph
    from mgspec.passes.kernels import IMPL, select_kernels

    graph = mgspec.compile_graph(S / "mgiad_cifar10.yaml", ["channel_grid.coarsest=16"])
    marked = select_kernels(copy_graph(graph))
    chosen = {name for name, s in slots(marked).items() if s.impl == IMPL}
    assert chosen == {
        name
        for name, s in slots(graph).items()
        if s.kind == "conv" and s.kernel == 3 and s.stride == 1 and s.groups > 1 and s.cin // s.groups == 4
    }
    assert "levels.l2.cycle.A" in chosen and "levels.l2.cycle.coarse.coarse.coarse.A" not in chosen  # dense cK
    assert list(marked.nodes(data=True)) == list(graph.nodes(data=True))
    assert mgspec.count(marked).as_dict() == mgspec.count(graph).as_dict()


def test_a_w_cycle_shares_its_first_visits_operators_on_every_level():
    """The second coarse visit applies the first visit's A_k and B_k, also where share_across borrows A only."""
    text = """
name: t
input: {channels: 3, size: 8}
classes: 4
resolution_grid:
  block: mgnet
  share_across: [A]
  levels: [{channels: 16, steps: 1}, {channels: 16, steps: 1}]
channel_grid: {group_size: 4, coarsest: 8, cycle: W}
"""
    graph = mgspec.compile_graph(text, optimized=False)
    for level in ("l1", "l2"):
        second = f"levels.{level}.cycle.coarse2."
        applied = {node(graph, n).slot for n in graph.nodes if node(graph, n).block.startswith(second)} - {None}
        assert not any(s.startswith(second) and s.rsplit(".", 1)[1] in ("A", "B") for s in slots(graph))
        assert {"levels.l1.cycle.coarse.A", f"levels.{level}.cycle.coarse.B"} <= applied
    assert "levels.l2.cycle.coarse.A" not in slots(graph)  # borrowed from l1 across the equal widths
    assert "levels.l2.cycle.coarse.B" in slots(graph)
