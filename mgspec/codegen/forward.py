"""One block's ``forward``: the nodes it runs and the child blocks it calls -> statements.

A value is bound to a variable when the math names it (``r``, ``du``, ``f_c``) or when it is
used more than once; a value used once is written inline. A child block is a call (a call of
a list's block always binds, so that runs of them can become a loop). Variables take the
math's names and are reused once their value is dead. The statements are data
(:mod:`.statements`); consecutive calls of a ``ModuleList``'s blocks that are the same but for
the index become a ``for`` loop there.
"""

from __future__ import annotations

from collections import Counter

from mgspec.codegen.interface import Tree
from mgspec.codegen.statements import Assign, Invoke, Return, Statement, expression, fold_loops
from mgspec.ir import Block, Node, node
from mgspec.ops import OPS

_ATOM, _SUM = 1, 0  # precedence of a rendered expression
_TENSOR = "torch.Tensor"


class Body:
    """The forward of ``block``: :meth:`statements`, and its :attr:`params` and :attr:`returns` text."""

    def __init__(self, tree: Tree, block: Block) -> None:
        self.tree, self.block, self.graph = tree, block, tree.graph
        self.io = io = tree.interface(block)
        self.weight_args = {s: name for name, s in io.weights}
        self.items = self._items()
        root = block is tree.root
        self.returned = [node(self.graph, v).args[0] for _, v in block.outputs] if root else [v for _, v in io.outputs]
        self._count_uses()
        self.scope = io.names.copy()
        if root:  # the model's inputs: the input ops' names
            inputs = [v for v in tree.subtree[""] if node(self.graph, v).op == "input"]
            self.inputs = {v: self.scope.create(node(self.graph, v).name) for v in inputs}
        else:
            self.inputs = {v: name for name, v in io.inputs}
        self.inline_calls = {v: self.made_by_call[v][0] for v in self.made_by_call if not self.bound(v)}
        self.names: dict[str, str] = dict(self.inputs)  # value -> the variable holding it now
        self.holder = {name: v for v, name in self.inputs.items()}  # variable -> the value it holds
        self.last_read: dict[str, int] = {}
        weights = [] if root else [f"{name}: nn.Module" for name, _ in io.weights]
        self.params = [f"{name}: {_TENSOR}" for name in self.inputs.values()] + weights
        n = len(self.returned)
        self.returns = _TENSOR if n == 1 else f"tuple[{', '.join([_TENSOR] * n)}]"

    def _items(self) -> list[tuple[str, object]]:
        """What the block does, in order: ("node", id) for its own nodes, ("call", Block) per child."""
        items: list[tuple[str, object]] = []
        called: set[str] = set()
        for node_id in self.tree.subtree[self.block.path]:
            n = node(self.graph, node_id)
            if n.block == self.block.path:
                if n.op != "input":
                    items.append(("node", node_id))
            else:
                child = self.tree.child_of(self.block, n.block)
                if child.path not in called:
                    called.add(child.path)
                    items.append(("call", child))
        return items

    def _count_uses(self) -> None:
        self.uses: Counter[str] = Counter()
        self.only_returned: Counter[str] = Counter(self.returned)
        self.made_by_call: dict[str, tuple[Block, str]] = {}
        for kind, payload in self.items:
            if kind == "node":
                if node(self.graph, payload).op != "output":
                    self.uses.update(node(self.graph, payload).args)
            else:
                self.uses.update(v for _, v in self.tree.interface(payload).inputs)
                for bind, v in self.tree.interface(payload).outputs:
                    self.made_by_call[v] = (payload, bind)
        self.uses.update(self.returned)

    def bound(self, v: str) -> bool:
        """Whether value ``v`` (computed in this block) gets a variable."""
        once = self.uses[v] == 1 and self.only_returned[v] == 1
        if v in self.made_by_call:
            child = self.made_by_call[v][0]
            single = len(self.tree.interface(child).outputs) == 1
            in_list = self.tree.ref(self.block, child.path).endswith("]")  # calls of list elements may loop
            return in_list or not (single and once)
        n = node(self.graph, v)
        if n.op == "output":
            return False
        if n.slot in self.tree.shared_bn:
            return True  # keep the order of a shared BatchNorm's applications
        return not once if n.name else self.uses[v] > 1

    def reads(self, v: str) -> set[str]:
        """The variables reading ``v`` reads, once the values used once are written inline."""
        made = v in self.made_by_call
        if v in self.inputs or (made and v not in self.inline_calls) or (not made and self.bound(v)):
            return {v}
        if v in self.inline_calls:
            return set().union(*(self.reads(a) for _, a in self.tree.interface(self.inline_calls[v]).inputs))
        return set().union(*(self.reads(a) for a in node(self.graph, v).args))

    def plan(self) -> list[tuple[str, object, list[str], set[str]]]:
        """(kind, payload, values defined, variables read) per statement, before names are chosen."""
        out: list[tuple[str, object, list[str], set[str]]] = []
        for kind, payload in self.items:
            if kind == "node":
                if self.bound(payload):
                    args = node(self.graph, payload).args
                    out.append(("node", payload, [payload], set().union(*(self.reads(a) for a in args))))
            elif not any(v in self.inline_calls for _, v in self.tree.interface(payload).outputs):
                child_io = self.tree.interface(payload)
                defines = [v for _, v in child_io.outputs]
                out.append(("call", payload, defines, set().union(*(self.reads(v) for _, v in child_io.inputs))))
        out.append(("return", None, [], set().union(*(self.reads(v) for v in self.returned))))
        return out

    def statements(self, sizes: dict[str, int]) -> list[Statement]:
        """The body; ``sizes`` are the lengths of the block's lists, whose calls may fold into loops."""
        plan = self.plan()
        for i, (_, _, _, read) in enumerate(plan):
            for v in read:
                self.last_read[v] = i
        out: list[Statement] = []
        for i, (kind, payload, defines, _) in enumerate(plan):
            if kind == "node":
                n = node(self.graph, payload)
                value = self.node_expr(n)[0]
                out.append(Assign((self.allocate(payload, i),), value, self.comment(n.note, payload)))
            elif kind == "call":
                call = self.call(payload)
                targets = tuple(self.allocate(v, i) for v in defines)
                out.append(Assign(targets, call, self.comment("", defines[-1])))
            else:
                out.append(Return(tuple(self.expr(v)[0] for v in self.returned)))
        return fold_loops(out, sizes, self.scope)

    def allocate(self, v: str, i: int) -> str:
        """A variable for ``v``, defined by statement ``i``: the math's name, or a dead variable's."""

        def dead(name: str) -> bool:
            return name in self.holder and self.last_read.get(self.holder[name], -1) <= i

        name = self.scope.create(self.wanted_name(v), dead)
        self.holder[name], self.names[v] = v, name
        return name

    def wanted_name(self, v: str) -> str:
        if v in self.made_by_call:
            return self.made_by_call[v][1]
        n = node(self.graph, v)
        if n.name:
            return n.name
        if n.op == "conv" and n.args[0] in self.names:
            label = n.label if n.label.isalnum() else n.label + "_"
            return label + self.names[n.args[0]]
        return "h"

    def expr(self, v: str) -> tuple[str, int]:
        """Value ``v`` as source text and its precedence: its variable, or its expression inline."""
        if v in self.names:
            return self.names[v], _ATOM
        if v in self.inline_calls:
            return expression(self.call(self.inline_calls[v])), _ATOM
        return self.node_expr(node(self.graph, v))

    def call(self, child: Block) -> Invoke:
        io = self.tree.interface(child)
        args = [self.expr(v)[0] for _, v in io.inputs]
        args += [self.tree.weight(self.block, s, self.weight_args) for _, s in io.weights]
        return Invoke(self.tree.callee(self.block, child), tuple(args))

    def node_expr(self, n: Node) -> tuple[str, int]:
        ops = [self.expr(a) for a in n.args]

        def atom(i: int) -> str:
            text, prec = ops[i]
            return text if prec == _ATOM else f"({text})"

        op = OPS[n.op]
        fields = {str(i): text for i, (text, _) in enumerate(ops)} | {f"p{i}": atom(i) for i in range(len(ops))}
        fields |= {"cin": n.cin, "cout": n.cout}
        if op.slot:
            fields["slot"] = self.tree.weight(self.block, n.slot, self.weight_args)
        texts = [text for text, _ in ops]
        text = op.template(fields) if callable(op.template) else op.template.format(*texts, **fields)
        if op.template == "{0}":  # the identity keeps its operand's binding
            return ops[0]
        return text, _SUM if op.infix else _ATOM

    def comment(self, note: str, value: str) -> str:
        """A statement's comment: the equation it completes; in the model's forward, also the shape."""
        if self.block is not self.tree.root:
            return note
        c, h, w = self.tree.shapes[value]
        shape = f"N x {c} x {h} x {w}" if node(self.graph, value).op not in ("avgpool", "linear") else f"N x {c}"
        return f"{note}; {shape}" if note else shape
