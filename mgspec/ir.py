"""The graph IR: a networkx DiGraph of operator nodes plus a table of weight slots.

Nodes (``G.nodes[id]["node"]``) carry a frozen :class:`Node`: the op (from the closed set
:data:`OPS`), its operand ids in order, channel counts and, for ops with weights, the name of
the :class:`Slot` they use. Nodes that share weights name the same slot; a slot is a module
of the model and its name is the module's path, so state_dict keys are ``<slot>.weight``.
Edges mirror the operands and carry ``arg`` (the operand position).

``G.graph`` holds:

- ``slots``: ``{name: Slot}``, in declaration order -- every weight the model owns,
  including slots no node uses (the paper's level-1 R/Pi), which counts report as unused;
- ``blocks``: the block tree (:class:`Block`), which groups slots and nodes into the units a
  person reads (a smoothing step, a channel level, a ResNet block); the codegen backend lays
  out one class per block kind from it;
- ``spec``: the validated spec, ``source``: its file name and ``sha256``: its hash.

docs/ir.md documents every op; :mod:`mgspec.verify` checks the invariants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

#: The closed op set: op -> (number of operands, kind of weight slot or None).
OPS: dict[str, tuple[int, str | None]] = {
    "input": (0, None),  # the image batch, N x c_in x H x W
    "conv": (1, "conv"),  # 2-D convolution, no bias, padding kernel // 2
    "bn": (1, "bn"),  # BatchNorm2d
    "relu": (1, None),
    "add": (2, None),  # a + b
    "sub": (2, None),  # a - b
    "shortcut_a": (1, None),  # ResNet option A: x[:, :, ::2, ::2], zero-pad channels cin -> cout
    "avgpool": (1, None),  # global average pool and flatten: N x C x H x W -> N x C
    "linear": (1, "linear"),  # fully connected, optional bias
    "output": (1, None),  # the logits
}

SLOT_KINDS = ("conv", "bn", "linear")


@dataclass(frozen=True)
class Slot:
    """A weight-owning module: a conv, a BatchNorm or a linear layer.

    ``operator`` is the math symbol it implements (A, B, R, Pi, P, BN, stem, conv, proj, fc),
    ``level`` the resolution level (or ``stem``/``head``) it belongs to.
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
    origin: tuple = ()

    @property
    def weights(self) -> int:
        if self.kind == "conv":
            return self.cout * (self.cin // self.groups) * self.kernel * self.kernel
        if self.kind == "bn":
            return 2 * self.cout
        return self.cout * self.cin + (self.cout if self.bias else 0)

    @property
    def shape(self) -> tuple:
        return (self.kind, self.cin, self.cout, self.kernel, self.stride, self.groups, self.bias)


@dataclass(frozen=True)
class Node:
    """One operator application."""

    op: str
    args: tuple[str, ...] = ()
    cin: int = 0
    cout: int = 0
    slot: str | None = None
    level: str = ""
    scope: str = ""  # the block path it belongs to, e.g. "levels.l2.cycle.coarse"
    label: str = ""  # what a person calls it: "A", "f - A(u)", "relu", ...
    origin: tuple = ()  # the spec path it derives from, for error locations


@dataclass(frozen=True)
class Block:
    """A node of the block tree: ``kind`` names the block class, ``path`` its module path."""

    kind: str
    path: str
    attrs: tuple[tuple[str, Any], ...] = ()
    children: tuple[Block, ...] = field(default=())

    def attr(self, name: str) -> Any:
        return dict(self.attrs)[name]


def slots(graph: nx.DiGraph) -> dict[str, Slot]:
    return graph.graph["slots"]


def node(graph: nx.DiGraph, node_id: str) -> Node:
    return graph.nodes[node_id]["node"]


def schedule(graph: nx.DiGraph) -> list[str]:
    """Node ids in execution order (the order lowering emitted them, which is topological)."""
    return list(graph.nodes)


def used_slots(graph: nx.DiGraph) -> set[str]:
    return {n["node"].slot for _, n in graph.nodes(data=True) if n["node"].slot}
