"""What the generated classes are compiled from: the block tree, each block's interface, and
how one block reaches another's modules.

:class:`Tree` reads a verified graph once (its slots, blocks, the nodes under each block in
execution order, which BatchNorms are applied more than once, the spatial sizes) and answers,
per block: its :class:`Interface` -- the values it reads that are computed outside it, named
as the lowering named them (``f``, ``u``) or, for values a pass handed down, after the op
and its operand (``Au`` for ``A(u)``); the weights it applies but an enclosing or sibling
block owns (``forward`` arguments); the values it declared that it computes -- and the
``self...`` text that reaches a slot or block below it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import networkx as nx

from mgspec.codegen.namespace import Namespace, function_namespace
from mgspec.codegen.pretty import literal
from mgspec.codegen.statements import Element
from mgspec.ir import Block, blocks, node, schedule, slots, within
from mgspec.ops import OPS
from mgspec.verify import spatial_sizes


@dataclass
class Interface:
    inputs: list[tuple[str, str]]  # (name, value)
    weights: list[tuple[str, str]]  # (name, slot): forward arguments
    outputs: list[tuple[str, str]]  # (bind name in the caller, value)
    names: Namespace  # the forward's scope once its arguments are named


class Tree:
    def __init__(self, graph: nx.DiGraph) -> None:
        self.graph = graph
        self.slots = slots(graph)
        self.blocks = blocks(graph)
        self.root: Block = graph.graph["blocks"]
        self.subtree: dict[str, list[str]] = {path: [] for path in self.blocks}
        for node_id in schedule(graph):
            path = node(graph, node_id).block
            for ancestor in self.blocks:
                if within(path, ancestor):
                    self.subtree[ancestor].append(node_id)
        applied = [node(graph, n) for n in graph.nodes]
        uses = Counter(n.slot for n in applied if n.slot and not OPS[n.op].pure)  # stateful: BatchNorm
        self.shared_bn = {s for s, k in uses.items() if k > 1}
        self.shapes = spatial_sizes(graph, graph.graph["spec"].input.shape)
        self._interfaces: dict[str, Interface] = {}

    def interface(self, block: Block) -> Interface:
        if block.path in self._interfaces:
            return self._interfaces[block.path]
        inside = set(self.subtree[block.path])
        external: dict[str, None] = {}
        weights: dict[str, str] = {}
        for node_id in self.subtree[block.path]:
            n = node(self.graph, node_id)
            for arg in n.args:
                if arg not in inside:
                    external[arg] = None
            if n.slot and not within(self.slots[n.slot].owner, block.path):
                weights.setdefault(n.slot, n.label)
        names = function_namespace()
        inputs = [(names.create(name), v) for name, v in block.inputs if v in external]
        local = {v: name for name, v in inputs}
        for v in external:
            if v not in local:
                inputs.append((names.create(self._input_name(v, local)), v))
        args = [(names.create(label), s) for s, label in weights.items()]
        outputs = [(bind, v) for (_, v), bind in zip(block.outputs, block.binds, strict=True) if v in inside]
        self._interfaces[block.path] = result = Interface(inputs, args, outputs, names)
        return result

    def _input_name(self, v: str, local: dict[str, str]) -> str:
        """A handed-down value is named after its op and operand (``Au``), else as lowered."""
        producer = node(self.graph, v)
        if len(producer.args) == 1 and producer.args[0] in local:
            return producer.label + local[producer.args[0]]
        return producer.name or producer.label

    def ref(self, block: Block, target: str) -> str:
        """``self...`` reaching the block or slot at path ``target`` from ``block``."""
        parts = (target[len(block.path) + 1 :] if block.path else target).split(".")
        text, here, i = "self", block.path, 0
        while i < len(parts):
            prefix = f"{here}.{parts[i]}" if here else parts[i]
            if prefix in self.blocks or prefix == target:
                text, here, i = f"{text}.{parts[i]}", prefix, i + 1
            else:  # a container: steps.0, levels.l1
                key = parts[i + 1]
                text += f".{parts[i]}[{key if key.isdigit() else literal(key)}]"
                here, i = f"{prefix}.{key}", i + 2
        return text

    def callee(self, block: Block, child: Block) -> str | Element:
        """What ``block`` calls to run ``child``: an element of one of its lists, or ``self...``."""
        attr, _, key = (child.path[len(block.path) + 1 :] if block.path else child.path).partition(".")
        if key.isdigit() and (f"{block.path}.{attr}" if block.path else attr) not in self.blocks:
            return Element(attr, int(key))
        return self.ref(block, child.path)

    def weight(self, block: Block, slot: str, args: dict[str, str]) -> str:
        return self.ref(block, slot) if within(self.slots[slot].owner, block.path) else args[slot]

    def child_of(self, block: Block, path: str) -> Block:
        return next(c for c in block.children if within(path, c.path))
