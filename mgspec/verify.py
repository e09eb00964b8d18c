"""Checks between lowering, every pass and the backends.

Input: a graph. Output: nothing, or a :class:`~mgspec.errors.SpecError` located at the spec
field the offending node derives from.

Checked:

- ops: the op set is closed and every node has its op's number of operands;
- dataflow: every operand exists and comes earlier in the schedule (so the schedule is a
  topological order), and the edges are exactly the operands (one edge per distinct
  operand, carrying its positions); one input and one output;
- channels agree on every edge; ``zero``, norms, activations, ``add`` and ``sub`` keep them;
- slots: every node that needs weights names a slot of its kind whose shape it agrees with
  (so shared slots have one shape); group counts divide both channel counts;
- blocks: paths are unique and nested under their parent's; every node is run by a block
  of the tree and every slot is owned by one, as its attribute (``<owner>.<attr>``); a node
  only reads values its block can see -- computed by the block or an enclosing one, or
  returned by a block it calls (declared as an output at every level in between);
  interfaces name existing nodes;
- spatial sizes agree where tensors meet (for the spec's input size, or the one given).
"""

from __future__ import annotations

import networkx as nx

from mgspec.errors import Location, SpecError
from mgspec.ir import ACTIVATIONS, OPS, Block, Node, Slot, blocks, node, slots, walk, within
from mgspec.load import format_path


def _fail(graph: nx.DiGraph, n: Node | Slot | None, message: str) -> SpecError:
    origin = n.origin if n is not None else ()
    loc = Location(graph.graph.get("source", "<spec>"))
    return SpecError(message, loc, format_path(origin) or None)


def _conv_out(size: int, slot: Slot) -> int:
    pad = slot.kernel // 2
    return (size + 2 * pad - slot.kernel) // slot.stride + 1


def spatial_sizes(graph: nx.DiGraph, size: int | tuple[int, int]) -> dict[str, tuple[int, int, int]]:
    """(channels, height, width) of every node's output for an input of ``size`` (square or (h, w))."""
    table = slots(graph)
    height, width = (size, size) if isinstance(size, int) else size
    shown = f"{height}x{width}"
    shapes: dict[str, tuple[int, int, int]] = {}
    for node_id in graph.nodes:
        n = node(graph, node_id)
        ins = [shapes[a] for a in n.args]
        if n.op == "input":
            shapes[node_id] = (n.cout, height, width)
        elif n.op == "conv":
            s = table[n.slot]
            _, h, w = ins[0]
            shapes[node_id] = (n.cout, _conv_out(h, s), _conv_out(w, s))
        elif n.op in ("shortcut_a", "avgpool2"):  # every other pixel / 2x2 windows, ceil
            _, h, w = ins[0]
            shapes[node_id] = (n.cout, (h + 1) // 2, (w + 1) // 2)
        elif n.op == "maxpool":  # 3x3, stride 2, padding 1
            _, h, w = ins[0]
            shapes[node_id] = (n.cout, (h - 1) // 2 + 1, (w - 1) // 2 + 1)
        elif n.op in ("add", "sub"):
            if ins[0][1:] != ins[1][1:]:
                raise _fail(
                    graph,
                    n,
                    f"{n.label} at {node_id} combines tensors of sizes {ins[0][1:]} and {ins[1][1:]} "
                    f"for a {shown} input",
                )
            shapes[node_id] = (n.cout,) + ins[0][1:]
        elif n.op in ("avgpool", "linear", "output"):
            shapes[node_id] = (n.cout, 1, 1)
        else:
            shapes[node_id] = (n.cout,) + ins[0][1:]
        if min(shapes[node_id][1:]) < 1:
            raise _fail(graph, n, f"the input ({shown}) is too small: it vanishes at {node_id}")
        if n.op == "gn" and n.cout // table[n.slot].groups * shapes[node_id][1] * shapes[node_id][2] < 2:
            _, h, w = shapes[node_id]
            raise SpecError(
                f"GroupNorm {n.slot} would normalise single values: {table[n.slot].groups} groups of "
                f"{n.cout} channels on a {h}x{w} map (for a {shown} input)",
                Location(graph.graph.get("source", "<spec>")),
                "layers.norm_groups",
                "use fewer norm_groups, or a larger input",
            )
    return shapes


def _check_dataflow(graph: nx.DiGraph) -> None:
    seen: set[str] = set()
    ends = {"input": 0, "output": 0}
    for node_id in graph.nodes:
        n = node(graph, node_id)
        if n.op not in OPS:
            raise _fail(graph, n, f"node {node_id} has unknown op {n.op!r}")
        if len(n.args) != OPS[n.op][0]:
            raise _fail(graph, n, f"node {node_id} ({n.op}) takes {OPS[n.op][0]} operands, has {len(n.args)}")
        if n.op in ends:
            ends[n.op] += 1
        wired = {a: d.get("positions") for a, d in graph.pred[node_id].items()}
        expected = {a: tuple(i for i, b in enumerate(n.args) if b == a) for a in n.args}
        if wired != expected:
            raise _fail(graph, n, f"node {node_id}: edges {wired} do not mirror its operands {n.args}")
        for arg in n.args:
            if arg not in seen:
                raise _fail(graph, n, f"node {node_id} reads {arg} before it is computed (schedule not topological)")
        seen.add(node_id)
    if ends != {"input": 1, "output": 1}:
        raise _fail(graph, None, f"the graph needs one input and one output, has {ends}")


def _check_channels(graph: nx.DiGraph) -> None:
    table = slots(graph)
    for node_id in graph.nodes:
        n = node(graph, node_id)
        for arg in n.args:
            producer = node(graph, arg)
            if producer.cout != n.cin:
                raise _fail(
                    graph,
                    n,
                    f"channel mismatch: {arg} gives {producer.cout} channels, "
                    f"{node_id} ({n.label or n.op}) expects {n.cin}",
                )
        if n.op in ("zero", "add", "sub", "bn", "gn", "maxpool", *ACTIVATIONS) and n.cin != n.cout:
            raise _fail(graph, n, f"{node_id} ({n.op}) must keep its channel count")
        slot_kind = OPS[n.op][1]
        if slot_kind is None:
            if n.slot is not None:
                raise _fail(graph, n, f"{node_id} ({n.op}) cannot use a weight slot")
            continue
        s = table.get(n.slot)
        if s is None or s.kind != slot_kind:
            raise _fail(graph, n, f"{node_id} ({n.op}) needs a {slot_kind} slot, names {n.slot!r}")
        if (s.cin, s.cout) != (n.cin, n.cout):
            raise _fail(graph, n, f"{node_id} uses slot {s.name} of shape {s.cin}->{s.cout} as {n.cin}->{n.cout}")
    for s in table.values():
        if s.kind in ("conv", "gn") and (s.cin % s.groups or s.cout % s.groups):
            raise _fail(graph, s, f"{s.name}: {s.groups} groups do not divide {s.cin} -> {s.cout} channels")


def _check_blocks(graph: nx.DiGraph) -> None:
    root: Block = graph.graph["blocks"]
    paths: set[str] = set()
    for block in walk(root):
        if block.path in paths:
            raise _fail(graph, None, f"block {block.path!r} appears twice in the block tree")
        paths.add(block.path)
        for child in block.children:
            if not child.path.startswith(f"{block.path}." if block.path else "") or child.path == block.path:
                raise _fail(graph, None, f"block {child.path!r} is not nested in its parent {block.path!r}")
        for name, value in block.inputs + block.outputs:
            if value not in graph:
                raise _fail(graph, None, f"block {block.path!r}: interface value {name} = {value!r} is not a node")
    for s in slots(graph).values():
        if (
            s.owner not in paths
            or not s.attr.isidentifier()
            or s.name != (f"{s.owner}.{s.attr}" if s.owner else s.attr)
        ):
            raise _fail(graph, s, f"slot {s.name} is not an attribute of a block (owner {s.owner!r})")
    by_path = blocks(graph)
    for node_id in graph.nodes:
        n = node(graph, node_id)
        if n.block not in paths:
            raise _fail(graph, n, f"node {node_id} is run by {n.block!r}, which is not a block")
        for arg in n.args:
            if not _visible(by_path, arg, node(graph, arg).block, n.block):
                raise _fail(graph, n, f"node {node_id} in block {n.block!r} reads {arg}, which that block cannot see")


def _visible(by_path: dict[str, Block], value: str, producer: str, consumer: str) -> bool:
    """Whether ``consumer`` can read ``value``: computed in scope, or returned up to it."""
    if within(consumer, producer):
        return True
    block = producer
    while not within(consumer, _parent(by_path, block)):
        if value not in dict(by_path[block].outputs).values():
            return False
        block = _parent(by_path, block)
    return value in dict(by_path[block].outputs).values()


def _parent(by_path: dict[str, Block], path: str) -> str:
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:i]) in by_path:
            return ".".join(parts[:i])
    return ""


def verify(graph: nx.DiGraph, size: int | None = None) -> None:
    """Raise a located SpecError if the graph breaks an invariant (see the module docstring)."""
    _check_dataflow(graph)
    _check_channels(graph)
    _check_blocks(graph)
    spec = graph.graph.get("spec")
    spatial_sizes(graph, size if size is not None else (spec.input.shape if spec else 32))
