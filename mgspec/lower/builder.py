"""The graph builder every block kind lowers through: declare blocks and their weight slots,
then run them, emitting operator nodes in execution order.

:meth:`Builder.declare` opens a block; the slots declared inside it are owned by it and are
returned as handles (the :class:`~mgspec.ir.Slot` itself), which the block kinds keep in their
own records and hand to :meth:`Builder.conv` and :meth:`Builder.norm` when they run. A block
that applies another block's weights is simply given that block's handle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import networkx as nx

from mgspec.errors import SpecError
from mgspec.ir import OPS, Block, Node, Slot, add_node
from mgspec.layers import LayerFns
from mgspec.load import Source, format_path
from mgspec.schema import Spec


@dataclass
class Draft:
    """A block while it is lowered (frozen into :class:`~mgspec.ir.Block` at the end)."""

    kind: str
    path: str
    params: tuple
    doc: str
    inputs: tuple = ()
    outputs: tuple = ()
    binds: tuple = ()
    children: list[Draft] = field(default_factory=list)

    def param(self, name: str):
        return dict(self.params)[name]

    def freeze(self) -> Block:
        children = tuple(c.freeze() for c in self.children)
        declared = tuple(name for name, _ in self.inputs)
        return Block(
            self.kind, self.path, self.params, self.inputs, self.outputs, self.binds, self.doc, children, declared
        )


class Builder:
    """The graph, its slot table and block tree while a spec is lowered, with the spec's layers."""

    def __init__(self, spec: Spec, source: Source | None, layer: LayerFns) -> None:
        self.spec = spec
        self.source = source
        self.layer = layer  # the layer choices, resolved once
        self.graph = nx.DiGraph()
        self.slots: dict[str, Slot] = {}
        self.level = ""  # the resolution level (or stem/head) being lowered
        self.running = ""  # the path of the block whose nodes are being emitted
        self.owner: Draft | None = None  # the block being declared
        self._ids: dict[str, int] = {}

    def error(self, message: str, origin: tuple, hint: str | None = None) -> SpecError:
        loc = self.source.locate(origin) if self.source else None
        return SpecError(message, loc, format_path(origin) or None, hint)

    # -- declaring: blocks and their slots ----------------------------------------------
    @contextmanager
    def declare(self, kind: str, path: str, params: tuple = (), doc: str = "") -> Iterator[Draft]:
        """A block whose slots (and child blocks) are declared inside the ``with``."""
        block = Draft(kind, path, params, doc)
        parent, self.owner = self.owner, block
        try:
            yield block
        finally:
            self.owner = parent
        if parent is not None:
            parent.children.append(block)

    def slot(self, attr: str, kind: str, cin: int, cout: int, operator: str, origin: tuple, **kw) -> Slot:
        """A weight slot of the block being declared, named ``<block path>.<attr>``: its handle."""
        owner = self.owner.path
        name = f"{owner}.{attr}" if owner else attr
        assert name not in self.slots, f"slot {name} declared twice"
        slot = Slot(name, kind, cin, cout, operator=operator, level=self.level, owner=owner, origin=origin, **kw)
        self.slots[name] = slot
        return slot

    def conv_slot(self, attr, cin, cout, operator, origin, kernel=3, stride=1, groups=1, doc="") -> Slot:
        return self.slot(
            attr, "conv", cin, cout, operator, origin, kernel=kernel, stride=stride, groups=groups, doc=doc
        )

    def norm_slot(self, attr: str, c: int, origin: tuple) -> Slot | None:
        """A slot of the normalisation the spec chose (``layers.norm``), or None for none.

        ``attr`` names it with ``{n}`` for the norm's op (``{n}1`` is ``bn1`` or ``gn1``).
        """
        norm, groups = self.layer.norm, self.layer.groups
        if norm is None:
            return None
        if norm.grouped and c % groups:
            raise self.error(
                f"{norm.title} with {groups} groups cannot normalise the {c} channels of "
                f"{self.owner.path or 'the model'}",
                ("layers", "norm_groups"),
                hint="choose norm_groups dividing every normalised width",
            )
        kw = {"groups": groups} if norm.grouped else {}
        return self.slot(attr.format(n=norm.op), norm.op, c, c, norm.operator, origin, **kw)

    # -- the equations in docstrings and comments: the spec's layers by their symbols --------
    def act_text(self, x: str) -> str:
        return f"{self.layer.act.symbol}({x})"

    def norm_text(self, x: str, suffix: str = "") -> str:
        return f"{self.layer.norm.symbol}{suffix}({x})" if self.layer.norm else x

    # -- running: nodes ---------------------------------------------------------------
    @contextmanager
    def run(self, block: Draft, binds: tuple[str, ...], **inputs: str) -> Iterator[Draft]:
        """Emit ``block``'s nodes inside the ``with``; set ``block.outputs`` before leaving."""
        assert not block.inputs, f"block {block.path} runs twice"
        block.inputs, block.binds = tuple(inputs.items()), binds
        caller, self.running = self.running, block.path
        try:
            yield block
        finally:
            self.running = caller
        assert len(block.outputs) == len(binds), block.path

    def emit(
        self,
        op: str,
        args: tuple[str, ...],
        cin: int,
        cout: int,
        label: str = "",
        slot: str | None = None,
        origin: tuple = (),
        name: str = "",
        note: str = "",
    ) -> str:
        """Append one operator node run by the current block; its id."""
        assert len(args) == OPS[op].arity, (op, args)
        base = slot or (f"{self.running}.{op}" if self.running else op)
        n = self._ids[base] = self._ids.get(base, 0) + 1
        node_id = base if n == 1 else f"{base}#{n}"
        payload = Node(op, args, cin, cout, slot, self.level, self.running, label or op, name, note, origin)
        add_node(self.graph, node_id, payload)
        return node_id

    def conv(self, x: str, slot: Slot, label: str = "", name: str = "", note: str = "") -> str:
        return self.emit("conv", (x,), slot.cin, slot.cout, label or slot.operator, slot.name, slot.origin, name, note)

    def norm(self, x: str, slot: Slot | None, name: str = "", note: str = "") -> str:
        """Normalise ``x`` with ``slot`` (a norm slot; None: no normalisation)."""
        if slot is None:
            return x
        return self.emit(slot.kind, (x,), slot.cin, slot.cout, slot.operator, slot.name, slot.origin, name, note)

    def act(self, x: str, c: int, name: str = "", note: str = "") -> str:
        """The spec's activation (``layers.activation``)."""
        op = self.layer.act.op
        return self.emit(op, (x,), c, c, op, name=name, note=note)

    def add(self, a: str, b: str, c: int, label: str = "+", name: str = "", note: str = "") -> str:
        return self.emit("add", (a, b), c, c, label, name=name, note=note)

    def sub(self, a: str, b: str, c: int, label: str = "-", name: str = "", note: str = "") -> str:
        return self.emit("sub", (a, b), c, c, label, name=name, note=note)

    def zero(self, like: str, c: int) -> str:
        return self.emit("zero", (like,), c, c, "0", name="u", note="u = 0")
