"""Checks between lowering and the backends.

Input: a lowered graph. Output: nothing, or a :class:`~mgspec.errors.SpecError` located at
the spec field the offending node derives from.

Checked: the op set is closed; every node's operands exist and edges mirror them; the graph
is acyclic with one input and one output; channels agree on every edge; group counts divide
both channel counts of every conv; every node that uses a slot agrees with the slot's shape
(so shared slots have one shape); spatial sizes agree where tensors meet (for the spec's
input size, or the one given).
"""

from __future__ import annotations

import networkx as nx

from mgspec.errors import Location, SpecError
from mgspec.ir import OPS, Node, Slot, node, slots
from mgspec.load import format_path


def _fail(graph: nx.DiGraph, n: Node | Slot | None, message: str) -> SpecError:
    origin = n.origin if n is not None else ()
    loc = Location(graph.graph.get("source", "<spec>"))
    return SpecError(message, loc, format_path(origin) or None)


def _conv_out(size: int, slot: Slot) -> int:
    pad = slot.kernel // 2
    return (size + 2 * pad - slot.kernel) // slot.stride + 1


def spatial_sizes(graph: nx.DiGraph, size: int) -> dict[str, tuple[int, int, int]]:
    """(channels, height, width) of every node's output for a square input of ``size``."""
    table = slots(graph)
    shapes: dict[str, tuple[int, int, int]] = {}
    for node_id in graph.nodes:
        n = node(graph, node_id)
        ins = [shapes[a] for a in n.args]
        if n.op == "input":
            shapes[node_id] = (n.cout, size, size)
        elif n.op == "conv":
            s = table[n.slot]
            _, h, w = ins[0]
            shapes[node_id] = (n.cout, _conv_out(h, s), _conv_out(w, s))
        elif n.op == "shortcut_a":
            _, h, w = ins[0]
            shapes[node_id] = (n.cout, (h + 1) // 2, (w + 1) // 2)
        elif n.op in ("add", "sub"):
            if ins[0][1:] != ins[1][1:]:
                raise _fail(
                    graph,
                    n,
                    f"{n.label} at {node_id} combines tensors of sizes {ins[0][1:]} and {ins[1][1:]} "
                    f"for a {size}x{size} input",
                )
            shapes[node_id] = (n.cout,) + ins[0][1:]
        elif n.op in ("avgpool", "linear", "output"):
            shapes[node_id] = (n.cout, 1, 1)
        else:
            shapes[node_id] = (n.cout,) + ins[0][1:]
        if min(shapes[node_id][1:]) < 1:
            raise _fail(graph, n, f"the input ({size}x{size}) is too small: it vanishes at {node_id}")
    return shapes


def verify(graph: nx.DiGraph, size: int | None = None) -> None:
    """Raise a located SpecError if the graph breaks an invariant (see the module docstring)."""
    table = slots(graph)
    ends = {"input": 0, "output": 0}
    for node_id in graph.nodes:
        n = node(graph, node_id)
        if n.op not in OPS:
            raise _fail(graph, n, f"node {node_id} has unknown op {n.op!r}")
        arity, slot_kind = OPS[n.op]
        if len(n.args) != arity:
            raise _fail(graph, n, f"node {node_id} ({n.op}) takes {arity} operands, has {len(n.args)}")
        if n.op in ends:
            ends[n.op] += 1
        for position, arg in enumerate(n.args):
            if arg not in graph or graph.edges.get((arg, node_id), {}).get("arg") not in (position, None):
                raise _fail(graph, n, f"node {node_id} operand {position} ({arg}) is not wired")
            producer = node(graph, arg)
            if producer.cout != n.cin:
                raise _fail(
                    graph,
                    n,
                    f"channel mismatch: {arg} gives {producer.cout} channels, "
                    f"{node_id} ({n.label or n.op}) expects {n.cin}",
                )
        if n.op in ("add", "sub", "bn", "relu") and n.cin != n.cout:
            raise _fail(graph, n, f"{node_id} ({n.op}) must keep its channel count")
        if slot_kind is None:
            if n.slot is not None:
                raise _fail(graph, n, f"{node_id} ({n.op}) cannot use a weight slot")
            continue
        s = table.get(n.slot)
        if s is None or s.kind != slot_kind:
            raise _fail(graph, n, f"{node_id} ({n.op}) needs a {slot_kind} slot, names {n.slot!r}")
        if (s.cin, s.cout) != (n.cin, n.cout):
            raise _fail(graph, n, f"{node_id} uses slot {s.name} of shape {s.cin}->{s.cout} as {n.cin}->{n.cout}")
    if ends != {"input": 1, "output": 1}:
        raise _fail(graph, None, f"the graph needs one input and one output, has {ends}")
    if not nx.is_directed_acyclic_graph(graph):
        raise _fail(graph, None, "the graph has a cycle")
    for s in table.values():
        if s.kind == "conv" and (s.cin % s.groups or s.cout % s.groups):
            raise _fail(graph, s, f"{s.name}: {s.groups} groups do not divide {s.cin} -> {s.cout} channels")
    spec = graph.graph.get("spec")
    spatial_sizes(graph, size if size is not None else (spec.input.size if spec else 32))
