"""The graph IR: a networkx DiGraph of operator nodes, a table of weight slots and a block tree.

Nodes (``G.nodes[id]["node"]``) carry a frozen :class:`Node`: the op (from the closed set
:data:`mgspec.ops.OPS`, which holds each op's properties), its operands in order (``args``: the
one record of the dataflow; the edges are derived from it by :func:`add_node` /
:func:`set_args` and checked by verify), channel counts, and for ops with weights the name of
the :class:`Slot` they use. Nodes that share weights name the same slot. The graph's node order
is the schedule, which is topological.

Two different blocks matter for a node with weights, and the IR keeps them apart:

- ``Node.block``: the block that *runs* the node (its code sits in that block's ``forward``);
- ``Slot.owner``: the block that *owns* the weights (the module the parameter lives in).

A slot's name is its module path, ``<owner>.<attr>``, so state_dict keys are
``<slot>.weight``. When a block runs a node whose slot it does not own, the weights are
reached through the owner: as an attribute of a child (``self.cycle.A``) or, when the owner
is outside the block, as an argument of its ``forward`` (this is how a smoothing step gets
the level's shared ``A`` and ``B``).

``G.graph`` holds:

- ``slots``: ``{name: Slot}`` in declaration order (the order modules are created, hence the
  state_dict order) -- every weight the model owns, including the slots a spec asks for
  without an op applying them (``level1_transfers``: the paper's level-1 R/Pi), which counts
  report as unused; slots whose applications a pass removed are dropped by the passes;
- ``blocks``: the root :class:`Block` of the block tree: the units a person reads (a smoothing
  step, a channel level, a ResNet block), each with its interface (named inputs and outputs);
- ``spec``, ``source`` (file name) and ``sha256`` of the spec;
- ``passes``: what each optimisation pass removed (:mod:`mgspec.passes`), once optimised.

docs/ir.md documents every op; :mod:`mgspec.verify` checks the invariants.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from mgspec.ops import OPS as OPS  # the closed op set, re-exported
from mgspec.ops import SLOTS


@dataclass(frozen=True)
class Slot:
    """A weight-owning module: a conv, a BatchNorm or GroupNorm (``groups`` groups) or a linear layer.

    ``owner`` is the path of the block whose module holds it (``name`` is ``owner.<attr>``),
    ``operator`` the math symbol it implements (A, B, R, Pi, P, BN, stem, conv, proj, fc),
    ``level`` the resolution level (or ``stem``/``head``) it belongs to, ``doc`` a short
    comment for the generated source.
    """

    name: str
    kind: str
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    bias: bool = False
    operator: str = ""
    level: str = ""
    owner: str = ""
    doc: str = ""
    origin: tuple = ()
    impl: str = ""  # a backend's own kernel for it (see mgspec.passes.kernels), or "" for torch's

    @property
    def attr(self) -> str:
        """The attribute name in the owner's module."""
        return self.name[len(self.owner) + 1 :] if self.owner else self.name

    @property
    def weights(self) -> int:
        return SLOTS[self.kind].weights(self)


@dataclass(frozen=True)
class Node:
    """One operator application.

    ``block`` is the path of the block that runs it; ``name`` the variable of the math it
    computes (``r``, ``du``, ``f_c``; empty for intermediate values), ``note`` the equation
    it completes (a comment in generated code), ``label`` what a person calls the operation
    (``A``, ``A_fine``, ``f - A(u)``).
    """

    op: str
    args: tuple[str, ...] = ()
    cin: int = 0
    cout: int = 0
    slot: str | None = None
    level: str = ""
    block: str = ""
    label: str = ""
    name: str = ""
    note: str = ""
    origin: tuple = ()  # the spec path it derives from, for error locations

    @property
    def key(self) -> tuple:
        """What makes two applications the same value (for a pure op)."""
        return (self.op, self.slot, self.args, self.cout)


@dataclass(frozen=True)
class Block:
    """A node of the block tree: one module of the model and the code its ``forward`` runs.

    ``kind`` names the block (``smoothing_step``, ``channel_level``, ...) and ``path`` is its
    module path. ``params`` are the numbers its constructor takes (channel counts, group
    counts); ``inputs`` and ``outputs`` its interface as (name, node id) pairs, recorded when
    the lowering ran it (passes keep them current); ``declared`` the input names as lowered,
    which passes never change; ``binds`` the names the caller gives the outputs; ``doc`` what
    it computes, in the paper's notation.
    """

    kind: str
    path: str
    params: tuple[tuple[str, Any], ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    binds: tuple[str, ...] = ()
    doc: str = ""
    children: tuple[Block, ...] = field(default=())
    declared: tuple[str, ...] = ()

    def param(self, name: str) -> Any:
        return dict(self.params)[name]


# -- reading --------------------------------------------------------------------------


def slots(graph: nx.DiGraph) -> dict[str, Slot]:
    return graph.graph["slots"]


def node(graph: nx.DiGraph, node_id: str) -> Node:
    return graph.nodes[node_id]["node"]


def schedule(graph: nx.DiGraph) -> list[str]:
    """Node ids in execution order (the graph's node order, which verify checks is topological)."""
    return list(graph.nodes)


def used_slots(graph: nx.DiGraph) -> set[str]:
    return {n["node"].slot for _, n in graph.nodes(data=True) if n["node"].slot}


def walk(block: Block) -> Iterator[Block]:
    """The block and its descendants, parents first."""
    yield block
    for child in block.children:
        yield from walk(child)


def blocks(graph: nx.DiGraph) -> dict[str, Block]:
    """Every block of the tree by path."""
    return {b.path: b for b in walk(graph.graph["blocks"])}


def within(path: str, ancestor: str) -> bool:
    """Whether block ``path`` is ``ancestor`` or inside it."""
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


# -- writing: the only functions that change nodes, so args and edges stay one record -------


def add_node(graph: nx.DiGraph, node_id: str, n: Node) -> None:
    graph.add_node(node_id, node=n)
    _connect(graph, node_id, n.args)


def set_args(graph: nx.DiGraph, node_id: str, args: tuple[str, ...]) -> None:
    n = node(graph, node_id)
    for arg in set(n.args):
        graph.remove_edge(arg, node_id)
    graph.nodes[node_id]["node"] = replace(n, args=args)
    _connect(graph, node_id, args)


def _connect(graph: nx.DiGraph, node_id: str, args: tuple[str, ...]) -> None:
    for arg in dict.fromkeys(args):
        graph.add_edge(arg, node_id, positions=tuple(i for i, a in enumerate(args) if a == arg))


def replace_uses(graph: nx.DiGraph, old: str, new: str, renamed: dict[str, str] | None = None) -> None:
    """Make every user of ``old`` (nodes and block interfaces) use ``new`` instead.

    The nodes change at once. With ``renamed``, the block interfaces do not: the replacement is
    recorded there for one :func:`rename_interfaces` after many replacements (a pass that
    replaces values node by node stays linear in the graph's size); without, they change now.
    """
    for user in list(graph.successors(old)):
        set_args(graph, user, tuple(new if a == old else a for a in node(graph, user).args))
    if renamed is None:
        rename_interfaces(graph, {old: new})
    else:
        renamed[old] = new


def rename_interfaces(graph: nx.DiGraph, renamed: dict[str, str]) -> None:
    """Make the block interfaces name ``renamed[v]`` (followed to its end) wherever they name ``v``."""
    if not renamed:
        return

    def final(value: str) -> str:
        while value in renamed:
            value = renamed[value]
        return value

    def rename(block: Block) -> Block:
        return replace(
            block,
            inputs=tuple((k, final(v)) for k, v in block.inputs),
            outputs=tuple((k, final(v)) for k, v in block.outputs),
            children=tuple(rename(c) for c in block.children),
        )

    graph.graph["blocks"] = rename(graph.graph["blocks"])


def remove_dead(graph: nx.DiGraph) -> int:
    """Remove nodes whose value reaches no output; the number removed."""
    live = {n for n in graph.nodes if node(graph, n).op == "output"}
    for n in list(live):
        live |= nx.ancestors(graph, n)
    dead = [n for n in graph.nodes if n not in live]
    graph.remove_nodes_from(dead)

    def prune(block: Block) -> Block:  # an interface names only values that still exist
        kept = [i for i, (_, v) in enumerate(block.outputs) if v in live]
        return replace(
            block,
            inputs=tuple((k, v) for k, v in block.inputs if v in live),
            outputs=tuple(block.outputs[i] for i in kept),
            binds=tuple(block.binds[i] for i in kept),
            children=tuple(prune(c) for c in block.children),
        )

    graph.graph["blocks"] = prune(graph.graph["blocks"])
    return len(dead)


def copy(graph: nx.DiGraph) -> nx.DiGraph:
    """An independent copy (payloads are frozen, so a shallow copy of them suffices)."""
    out = graph.copy()
    out.graph = dict(graph.graph)
    out.graph["slots"] = dict(graph.graph["slots"])
    return out
