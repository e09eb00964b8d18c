"""Analytic counts from the graph alone: weights and MACs, no tensors.

Weights are summed over slots (so a shared slot counts once, and a slot no node uses -- the
paper's level-1 R/Pi that ``level1_transfers: true`` asks for -- still counts, and is reported
as ``unused``). MACs are summed over
nodes (so a shared operator applied twice costs twice): conv ``cout * cin/groups * k^2 *
H_out * W_out`` and linear ``cin * cout``; BatchNorm, ReLU, additions and pooling are not
multiply-accumulates and are left out, as in torch.utils.flop_counter (FLOPs = 2 x MACs).

Counts describe the graph they are given: the optimised graph that both backends run, whose
``passes`` record (:mod:`mgspec.passes`) is copied into :attr:`Counts.passes` so a reader sees
what each pass removed, or the literal graph (``--no-optimize``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import networkx as nx

from mgspec.ir import node, slots, used_slots
from mgspec.verify import macs_of, spatial_sizes


@dataclass
class Counts:
    name: str
    family: str
    input_size: int | list[int]
    total: int = 0
    by_level: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    unused: int = 0
    unused_slots: list[str] = field(default_factory=list)
    macs: int = 0
    macs_by_level: dict[str, int] = field(default_factory=dict)
    macs_by_operator: dict[str, int] = field(default_factory=dict)
    passes: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "total": self.total,
            "by_level": self.by_level,
            "by_operator": self.by_operator,
            "unused": self.unused,
            "unused_slots": self.unused_slots,
            "input_size": self.input_size,
            "macs": self.macs,
            "macs_by_level": self.macs_by_level,
            "macs_by_operator": self.macs_by_operator,
            "passes": self.passes,
        }


def count(graph: nx.DiGraph, input_size: int | tuple[int, int] | None = None) -> Counts:
    """Weights and MACs per image of a graph, for the spec's input or one of ``input_size``
    (square, or (height, width))."""
    spec = graph.graph["spec"]
    size = input_size if input_size is not None else spec.input.shape
    shown = size if isinstance(size, int) or size[0] != size[1] else size[0]
    result = Counts(spec.name, spec.family, shown if isinstance(shown, int) else list(shown))
    used = used_slots(graph)
    for s in slots(graph).values():
        result.total += s.weights
        result.by_level[s.level] = result.by_level.get(s.level, 0) + s.weights
        result.by_operator[s.operator] = result.by_operator.get(s.operator, 0) + s.weights
        if s.name not in used:
            result.unused += s.weights
            result.unused_slots.append(s.name)
    table = slots(graph)
    for _node_id, n, m in _node_macs(graph, size):
        operator = table[n.slot].operator if n.slot else n.op
        result.macs += m
        result.macs_by_level[n.level] = result.macs_by_level.get(n.level, 0) + m
        result.macs_by_operator[operator] = result.macs_by_operator.get(operator, 0) + m
    result.passes = [asdict(p) for p in graph.graph.get("passes", ())]
    return result


def _node_macs(graph: nx.DiGraph, size: int | tuple[int, int]):
    """(node id, node, MACs) of every node that multiplies-accumulates (by its op's MACs rule)."""
    shapes = spatial_sizes(graph, size)
    for node_id in graph.nodes:
        m = macs_of(graph, node_id, shapes[node_id])
        if m:
            yield node_id, node(graph, node_id), m


def macs(graph: nx.DiGraph, input_size: int | tuple[int, int] | None = None) -> int:
    """MACs per image of a graph (for the spec's input size unless given)."""
    size = input_size if input_size is not None else graph.graph["spec"].input.shape
    return sum(m for _, _, m in _node_macs(graph, size))
