"""Checks between lowering, every pass and the backends.

Input: a graph. Output: nothing, or a :class:`~mgspec.errors.SpecError` located at the spec
field the offending node derives from.

Checked:

- ops: the op set is closed and every node has its op's number of operands;
- dataflow: every operand exists and comes earlier in the schedule (so the schedule is a
  topological order), and the edges are exactly the operands (one edge per distinct
  operand, carrying its positions); one input and one output;
- channels agree on every edge; the ops that keep them (:attr:`mgspec.ops.Op.keeps_channels`) do;
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
from mgspec.ir import Block, Node, Slot, blocks, node, slots, walk, within
from mgspec.load import format_path
from mgspec.ops import MACS, NORM_OPS, OPS, SLOTS, SPATIAL


def _locate(graph: nx.DiGraph, path: tuple) -> Location:
    """Where the spec writes ``path`` (or its nearest written ancestor), by the lowering's locations."""
    locations = graph.graph.get("locations", {})
    for end in range(len(path), -1, -1):
        if tuple(path[:end]) in locations:
            return locations[tuple(path[:end])]
    return Location(graph.graph.get("source", "<spec>"))


def _fail(graph: nx.DiGraph, n: Node | Slot | None, message: str) -> SpecError:
    origin = n.origin if n is not None else ()
    loc = Location(graph.graph.get("source", "<spec>"))
    return SpecError(message, loc, format_path(origin) or None)


def spatial_sizes(graph: nx.DiGraph, size: int | tuple[int, int]) -> dict[str, tuple[int, int, int]]:
    """(channels, height, width) of every node's output for an input of ``size`` (square or (h, w)),
    by each op's spatial rule (:data:`mgspec.ops.SPATIAL`)."""
    table = slots(graph)
    height, width = (size, size) if isinstance(size, int) else size
    shown = f"{height}x{width}"
    shapes: dict[str, tuple[int, int, int]] = {}
    for node_id in graph.nodes:
        n = node(graph, node_id)
        ins = [shapes[a] for a in n.args]
        if any(i[1:] != ins[0][1:] for i in ins[1:]):
            sizes = " and ".join(str(i[1:]) for i in ins)
            raise _fail(graph, n, f"{n.label} at {node_id} combines tensors of sizes {sizes} for a {shown} input")
        op = OPS[n.op]
        hw = (height, width) if op.arity == 0 else SPATIAL[op.spatial](ins, table.get(n.slot))
        shapes[node_id] = (n.cout, *hw)
        if min(hw) < 1:
            raise _fail(graph, n, f"the input ({shown}) is too small: it vanishes at {node_id}")
        if n.op in NORM_OPS:
            _check_statistics(graph, NORM_OPS[n.op], table[n.slot], hw, shown)
    return shapes


def _check_statistics(graph: nx.DiGraph, norm, s: Slot, hw: tuple[int, int], shown: str) -> None:
    """A norm must not compute a statistic over a single value (it would be undefined or zero)."""
    detail = norm.single(s, *hw)
    if detail is not None:
        path = ("layers", "norm_groups" if norm.grouped else "norm")
        hint = "use fewer norm_groups, or a larger input" if norm.grouped else "use another norm, or more channels"
        raise SpecError(
            f"{norm.title} {s.name} would normalise single values: {detail} (for a {shown} input)",
            _locate(graph, path),
            format_path(path),
            hint,
        )


def macs_of(graph: nx.DiGraph, node_id: str, shape: tuple[int, int, int]) -> int:
    """The multiply-accumulates of one application (:data:`mgspec.ops.MACS`)."""
    n = node(graph, node_id)
    return MACS[OPS[n.op].macs](n, slots(graph).get(n.slot), shape)


def _check_dataflow(graph: nx.DiGraph) -> None:
    seen: set[str] = set()
    ends = {"input": 0, "output": 0}
    for node_id in graph.nodes:
        n = node(graph, node_id)
        if n.op not in OPS:
            raise _fail(graph, n, f"node {node_id} has unknown op {n.op!r}")
        if len(n.args) != OPS[n.op].arity:
            raise _fail(graph, n, f"node {node_id} ({n.op}) takes {OPS[n.op].arity} operands, has {len(n.args)}")
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
        if OPS[n.op].keeps_channels and n.cin != n.cout:
            raise _fail(graph, n, f"{node_id} ({n.op}) must keep its channel count")
        slot_kind = OPS[n.op].slot
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
        if SLOTS[s.kind].grouped and (s.cin % s.groups or s.cout % s.groups):
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
