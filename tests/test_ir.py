"""IR hygiene: every check of verify is hit by a graph built malformed on purpose."""

from __future__ import annotations

from dataclasses import replace

import pytest

import mgspec
from mgspec.ir import Block, add_node, copy, node, set_args, slots
from mgspec.verify import verify

# Two resolution levels with a channel grid: every op but shortcut_a, blocks three deep.
SPEC = """
name: tiny
input: {channels: 3, size: 8}
classes: 4
resolution_grid:
  block: mgnet
  levels: [{channels: 8, steps: 1}, {channels: 8, steps: 1}]
channel_grid: {group_size: 2, coarsest: 4}
"""


@pytest.fixture
def graph():
    g = mgspec.compile_graph(mgspec.parse_text(SPEC, "tiny.yaml"), optimized=False)
    verify(g)
    return copy(g)


def first(g, op: str, block: str | None = None) -> str:
    return next(n for n in g.nodes if node(g, n).op == op and (block is None or node(g, n).block == block))


def retag(g, node_id: str, **changes) -> None:
    g.nodes[node_id]["node"] = replace(node(g, node_id), **changes)


def edit_slot(g, name: str, **changes) -> None:
    g.graph["slots"] = {**slots(g), name: replace(slots(g)[name], **changes)}


def move_to_end(g, node_id: str) -> None:
    payload, users = node(g, node_id), dict(g.succ[node_id])
    g.remove_node(node_id)
    add_node(g, node_id, payload)
    for user, data in users.items():
        g.add_edge(node_id, user, **data)


def edit_blocks(g, fn) -> None:
    g.graph["blocks"] = fn(g.graph["blocks"])


def first_child(block: Block, **changes) -> Block:
    return replace(block, children=(replace(block.children[0], **changes),) + block.children[1:])


BROKEN = {
    "unknown op": (lambda g: retag(g, first(g, "relu"), op="tanh"), "unknown op 'tanh'"),
    "operand count": (lambda g: set_args(g, first(g, "relu"), ("input", "input")), "takes 1 operands, has 2"),
    "extra edge": (lambda g: g.add_edge("input", first(g, "add"), positions=(0,)), "do not mirror its operands"),
    "missing edge": (lambda g: g.remove_edge(*next(iter(g.in_edges(first(g, "add"))))), "do not mirror"),
    "schedule order": (lambda g: move_to_end(g, first(g, "relu")), "before it is computed"),
    "two outputs": (
        lambda g: add_node(g, "extra", replace(node(g, "output"))) or set_args(g, "extra", ("head.fc",)),
        "one input and one output",
    ),
    "channel mismatch": (lambda g: retag(g, first(g, "relu"), cin=5, cout=5), "channel mismatch"),
    "channels kept": (lambda g: retag(g, first(g, "relu"), cout=5), "must keep its channel count"),
    "slot on a pure op": (lambda g: retag(g, first(g, "relu"), slot="stem.bn"), "cannot use a weight slot"),
    "missing slot": (lambda g: retag(g, "stem.conv", slot="nowhere"), "needs a conv slot"),
    "slot shape": (lambda g: edit_slot(g, "stem.conv", cout=16), "of shape 3->16 as 3->8"),
    "groups": (lambda g: edit_slot(g, "levels.l1.cycle.A", groups=3), "3 groups do not divide"),
    "block twice": (
        lambda g: edit_blocks(g, lambda b: replace(b, children=b.children + b.children[:1])),
        "appears twice",
    ),
    "not nested": (
        lambda g: edit_blocks(
            g,
            lambda b: replace(
                b, children=(b.children[0], first_child(b.children[1], path="elsewhere.cycle")) + b.children[2:]
            ),
        ),
        "not nested",
    ),
    "interface": (lambda g: edit_blocks(g, lambda b: first_child(b, outputs=(("x", "ghost"),))), "is not a node"),
    "slot owner": (lambda g: edit_slot(g, "stem.conv", owner="nowhere"), "is not an attribute of a block"),
    "slot attribute": (lambda g: edit_slot(g, "stem.conv", owner=""), "is not an attribute of a block"),
    "runner": (lambda g: retag(g, first(g, "relu"), block="nowhere"), "which is not a block"),
    "scope": (lambda g: set_args(g, first(g, "avgpool"), ("levels.l2.cycle.B",)), "cannot see"),
    "sizes": (lambda g: edit_slot(g, "levels.l1.cycle.A", stride=2), "combines tensors of sizes"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_verify_catches(graph, case):
    breaks, message = BROKEN[case]
    breaks(graph)
    with pytest.raises(mgspec.SpecError, match=message):
        verify(graph)


def test_verify_catches_a_vanishing_input(graph):
    with pytest.raises(mgspec.SpecError, match="too small"):
        verify(graph, size=0)


def test_edges_are_derived_from_operands(graph):
    add = first(graph, "add")
    a, b = node(graph, add).args
    set_args(graph, add, (b, b))  # the same operand twice: one edge, two positions
    assert graph.pred[add] == {b: {"positions": (0, 1)}}
    verify(graph)


def test_run_and_owner_are_kept_apart():
    g = mgspec.compile_graph(mgspec.parse_text(SPEC, "tiny.yaml"))
    step_A = [n for n in g.nodes if node(g, n).slot == "levels.l2.cycle.A" and ".post." in node(g, n).block]
    assert step_A, "the post-smoothing step applies its channel level's A"
    assert slots(g)["levels.l2.cycle.A"].owner == "levels.l2.cycle"
