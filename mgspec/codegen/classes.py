"""The block tree and its nodes -> Python classes, one per distinct block signature.

Input: a verified (optimised) graph. Output: :class:`Module` -- the class definitions in
dependency order and the model's class name. Nothing here knows a network: every line of a
``forward`` is rendered from a node the block runs, every line of an ``__init__`` from a slot
the block owns or a child block, so what the lowering writes (and the passes rewrite) is what
the generated file says. The rules, as torch.fx's CodeGen at block level:

- **Interface.** A block's inputs are the values its nodes read that are computed outside it,
  named as the lowering named them (``f``, ``u``) -- or, for values a pass handed down, after
  the op and its operand (``Au`` for ``A(u)``). Weights the block applies but an enclosing or
  sibling block owns become ``forward`` arguments (``SmoothingStep(f, u, A, B)``); its
  outputs are the values it declared that it computes.
- **Statements.** A value is bound to a variable when the math names it (``r``, ``du``,
  ``f_c``) or when it is used more than once; a value used once is written inline. A child
  block is a call. Variables take the math's names and are reused once their value is dead.
  Consecutive calls of a ``ModuleList``'s blocks with the same text become a ``for`` loop.
- **Classes.** Two blocks share a class when their code is the same up to the numbers the
  block declares as constructor parameters (channels, groups). A child whose construction
  is the same in every instance is built in ``__init__``; otherwise it is a constructor
  argument, so the channel hierarchy is built by the model and runs as a recursion.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import networkx as nx

from mgspec.codegen.helpers import helper_names
from mgspec.codegen.namespace import Namespace, camel_case
from mgspec.codegen.pretty import INDENT, LINE, Call, Expr, Num, Seq, flat, lines, literal, signature
from mgspec.ir import Block, Node, blocks, node, schedule, slots, within
from mgspec.ops import OPS, SLOTS
from mgspec.verify import spatial_sizes

#: Names every generated module defines or imports.
MODULE_NAMES = frozenset({"torch", "F", "nn", "create_model"})
_RESERVED = {"self", "torch", "F", "nn"}
_ATOM, _SUM = 1, 0  # precedence of a rendered expression
_NAMES = {"mgiad": "MGiaD", "mgnet": "MgNet", "mgic": "MGIC", "resnet": "ResNet"}


@dataclass
class Interface:
    inputs: list[tuple[str, str]]  # (name, value)
    weights: list[tuple[str, str]]  # (name, slot): forward arguments
    outputs: list[tuple[str, str]]  # (bind name in the caller, value)


@dataclass
class Instance:
    block: Block
    key: tuple = ()
    members: list[tuple[str, str, object]] = field(default_factory=list)  # (attr, kind, payload)
    forward: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    returns: str = ""
    doc: str = ""
    cls: ClassDef | None = None


@dataclass
class ClassDef:
    name: str
    instances: list[Instance]
    inject: set[str] = field(default_factory=set)
    params: list[tuple[str, object]] = field(default_factory=list)
    text: str = ""


@dataclass
class Module:
    classes: list[ClassDef]
    model: str


def _ident(text: str) -> str:
    name = re.sub(r"\W", "_", text, flags=re.ASCII).strip("_") or "v"
    return "_" + name if name[0].isdigit() else name


def _class_name(kind: str) -> str:
    return "".join(_NAMES.get(part, part[:1].upper() + part[1:]) for part in kind.split("_"))


class _Compiler:
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
        spec = graph.graph["spec"]
        self.shapes = spatial_sizes(graph, spec.input.shape)
        self._interfaces: dict[str, Interface] = {}
        self._members: dict[str, list] = {}
        self._by_path: dict[str, Instance] = {}

    # -- interfaces ---------------------------------------------------------------------
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
                weights.setdefault(n.slot, _ident(n.label))
        declared = [(name, v) for name, v in block.inputs if v in external]
        taken = {name for name, _ in declared}
        local = {v: name for name, v in declared}
        inputs = list(declared)
        for v in external:
            if v in local:
                continue
            producer = node(self.graph, v)
            if len(producer.args) == 1 and producer.args[0] in local:
                name = _ident(producer.label + local[producer.args[0]])
            else:
                name = _ident(producer.name or producer.label)
            name = _unique(name, taken)
            inputs.append((name, v))
        args = [(_unique(name, taken), s) for s, name in weights.items()]
        outputs = [(bind, v) for (_, v), bind in zip(block.outputs, block.binds, strict=True) if v in inside]
        self._interfaces[block.path] = result = Interface(inputs, args, outputs)
        return result

    # -- references -------------------------------------------------------------------
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

    def weight(self, block: Block, slot: str, args: dict[str, str]) -> str:
        return self.ref(block, slot) if within(self.slots[slot].owner, block.path) else args[slot]

    def child_of(self, block: Block, path: str) -> Block:
        return next(c for c in block.children if within(path, c.path))

    # -- forward ----------------------------------------------------------------------
    def forward(self, inst: Instance) -> None:
        block = inst.block
        io = self.interface(block)
        g = self.graph
        weight_args = {s: name for name, s in io.weights}
        items: list[tuple[str, object]] = []  # ("node", id) | ("call", Block)
        called: set[str] = set()
        for node_id in self.subtree[block.path]:
            n = node(g, node_id)
            if n.block == block.path:
                if n.op != "input":
                    items.append(("node", node_id))
            else:
                child = self.child_of(block, n.block)
                if child.path not in called:
                    called.add(child.path)
                    items.append(("call", child))
        returned = [v for _, v in io.outputs]
        if block is self.root:
            returned = [node(g, v).args[0] for _, v in block.outputs]  # the output op is the identity
        uses: Counter[str] = Counter()
        only_returned: Counter[str] = Counter(returned)
        made_by_call: dict[str, tuple[Block, str]] = {}
        for kind, payload in items:
            if kind == "node":
                if node(g, payload).op != "output":
                    uses.update(node(g, payload).args)
            else:
                uses.update(v for _, v in self.interface(payload).inputs)
                for bind, v in self.interface(payload).outputs:
                    made_by_call[v] = (payload, bind)
        uses.update(returned)

        def bound(v: str) -> bool:
            """Whether value ``v`` (computed in this block) gets a variable."""
            if v in made_by_call:
                child = made_by_call[v][0]
                single = len(self.interface(child).outputs) == 1
                in_list = self.ref(block, child.path).endswith("]")  # calls of list elements may loop
                return in_list or not (single and uses[v] == 1 and only_returned[v] == 1)
            n = node(g, v)
            if n.op == "output":
                return False
            if n.slot in self.shared_bn:
                return True  # keep the order of a shared BatchNorm's applications
            if n.name:
                return not (uses[v] == 1 and only_returned[v] == 1)
            return uses[v] > 1

        # Statements: what each defines and reads (after inlining), before names are chosen.
        params = {v: name for name, v in io.inputs}
        if block is self.root:
            params = {v: node(g, v).name for v in self.subtree[""] if node(g, v).op == "input"}
        inline_calls = {v: made_by_call[v][0] for v in made_by_call if not bound(v)}

        def reads(v: str) -> set[str]:
            if v in params or (v in made_by_call and v not in inline_calls) or (v not in made_by_call and bound(v)):
                return {v}
            if v in inline_calls:
                return set().union(*(reads(a) for _, a in self.interface(inline_calls[v]).inputs))
            return set().union(*(reads(a) for a in node(g, v).args))

        statements: list[tuple[str, object, list[str], set[str]]] = []  # (kind, payload, defines, reads)
        for kind, payload in items:
            if kind == "node":
                if bound(payload):
                    statements.append(
                        ("node", payload, [payload], set().union(*(reads(a) for a in node(g, payload).args)))
                    )
            elif not any(v in inline_calls for _, v in self.interface(payload).outputs):
                child_io = self.interface(payload)
                defines = [v for _, v in child_io.outputs]
                statements.append(("call", payload, defines, set().union(*(reads(v) for _, v in child_io.inputs))))
        statements.append(("return", None, [], set().union(*(reads(v) for v in returned))))

        # Names: the math's, reused once the previous value is dead.
        last_read: dict[str, int] = {}
        for i, (_, _, _, r) in enumerate(statements):
            for v in r:
                last_read[v] = i
        names: dict[str, str] = dict(params)
        holder = {name: v for v, name in params.items()}
        reserved = _RESERVED | set(weight_args.values())

        def allocate(v: str, wanted: str, i: int) -> str:
            wanted = _ident(wanted)
            for n in range(1, 1000):
                name = wanted if n == 1 else f"{wanted}_{n}"
                old = holder.get(name)
                if name not in reserved and (old is None or last_read.get(old, -1) <= i):
                    holder[name], names[v] = v, name
                    return name
            raise AssertionError("no free variable name")

        def wanted_name(v: str) -> str:
            if v in made_by_call:
                return made_by_call[v][1]
            n = node(g, v)
            if n.name:
                return n.name
            if n.op == "conv" and n.args[0] in names:
                label = n.label if n.label.isalnum() else n.label + "_"
                return label + names[n.args[0]]
            return "h"

        def expr(v: str) -> tuple[str, int]:
            if v in names:
                return names[v], _ATOM
            if v in inline_calls:
                return self.call_text(block, inline_calls[v], expr, weight_args), _ATOM
            return self.node_expr(block, node(g, v), expr, weight_args)

        out: list[tuple[str, str, int | None]] = []  # (statement, comment, container index)
        for i, (kind, payload, defines, _) in enumerate(statements):
            if kind == "node":
                value = self.node_expr(block, node(g, payload), expr, weight_args)[0]
                text = f"{allocate(payload, wanted_name(payload), i)} = {value}"
                out.append((text, self.comment(block, node(g, payload).note, payload), None))
            elif kind == "call":
                call = self.call_text(block, payload, expr, weight_args)
                targets = ", ".join(allocate(v, wanted_name(v), i) for v in defines)
                out.append((f"{targets} = {call}", self.comment(block, "", defines[-1]), None))
            else:
                values = [expr(v)[0] for v in returned]
                out.append((f"return {', '.join(values)}", "", None))
        sizes = {attr: len(group) for attr, kind, group in self.container_groups(block)}
        inst.forward = _loops(out, sizes)
        tensor = "torch.Tensor"
        inst.params = [f"{name}: {tensor}" for v, name in params.items()] + [
            f"{name}: nn.Module" for name, _ in io.weights
        ]
        if block is self.root:
            inst.params = [f"{name}: {tensor}" for name in params.values()]
        inst.returns = tensor if len(returned) == 1 else f"tuple[{', '.join([tensor] * len(returned))}]"

    def comment(self, block: Block, note: str, value: str) -> str:
        if block is not self.root:
            return note
        c, h, w = self.shapes[value]
        shape = f"N x {c} x {h} x {w}" if node(self.graph, value).op not in ("avgpool", "linear") else f"N x {c}"
        return f"{note}; {shape}" if note else shape

    def call_text(self, block: Block, child: Block, expr, weight_args: dict[str, str]) -> str:
        io = self.interface(child)
        args = [expr(v)[0] for _, v in io.inputs] + [self.weight(block, s, weight_args) for _, s in io.weights]
        return f"{self.ref(block, child.path)}({', '.join(args)})"

    def node_expr(self, block: Block, n: Node, expr, weight_args: dict[str, str]) -> tuple[str, int]:
        ops = [expr(a) for a in n.args]

        def atom(i: int) -> str:
            text, prec = ops[i]
            return text if prec == _ATOM else f"({text})"

        op = OPS[n.op]
        fields = {str(i): text for i, (text, _) in enumerate(ops)} | {f"p{i}": atom(i) for i in range(len(ops))}
        fields |= {"cin": n.cin, "cout": n.cout}
        if op.slot:
            fields["slot"] = self.weight(block, n.slot, weight_args)
        texts = [text for text, _ in ops]
        text = op.template(fields) if callable(op.template) else op.template.format(*texts, **fields)
        if op.template == "{0}":  # the identity keeps its operand's binding
            return ops[0]
        return text, _SUM if op.infix else _ATOM

    # -- __init__ ---------------------------------------------------------------------
    def members(self, inst: Instance) -> None:
        """The block's modules in creation order: owned slots and children, as first declared."""
        block = inst.block
        if block.path in self._members:
            inst.members = self._members[block.path]
            return
        order: dict[str, None] = {}
        for s in self.slots.values():
            if within(s.owner, block.path):
                rel = s.name[len(block.path) + 1 :] if block.path else s.name
                order[rel.split(".")[0]] = None
        for child in block.children:
            rel = child.path[len(block.path) + 1 :] if block.path else child.path
            order[rel.split(".")[0]] = None
        for attr in order:
            path = f"{block.path}.{attr}" if block.path else attr
            if path in self.slots and self.slots[path].owner == block.path:
                inst.members.append((attr, "slot", self.slots[path]))
            elif path in self.blocks:
                inst.members.append((attr, "child", self.blocks[path]))
            else:
                group = [c for c in block.children if c.path.startswith(path + ".")]
                keys = [c.path[len(path) + 1 :] for c in group]
                kind = "list" if keys == [str(i) for i in range(len(keys))] else "dict"
                inst.members.append((attr, kind, group))
        self._members[block.path] = inst.members

    def signature(self, inst: Instance) -> tuple:
        """What two instances must share to be one class: everything but their numbers."""
        init = []
        for attr, kind, payload in inst.members:
            init.append(f"{attr} = {abstract(slot_ctor(payload)) if kind == 'slot' else kind}")
        names = tuple(name for name, _ in inst.block.params)
        return (inst.block.kind, names, inst.doc, tuple(init), tuple(inst.params), inst.returns, tuple(inst.forward))

    def describe(self, inst: Instance) -> str:
        block, io = inst.block, self.interface(inst.block)
        actual = {name for name, _ in io.inputs}
        missing = [name for name in block.declared if name not in actual]
        extra = [name for name, _ in io.inputs if name not in block.declared]
        notes = []
        if block is self.root:
            return block.doc
        if missing:
            notes.append(f"Here {' and '.join(missing)} = 0 on entry: the work on zeros was folded away.")
        if extra:
            notes.append(
                f"{', '.join(extra)} arrive{'s' if len(extra) == 1 else ''} from the caller, which already "
                "computed the same value (common-subexpression elimination)."
            )
        return "\n\n".join([block.doc] + notes) if notes else block.doc

    def variant(self, inst: Instance) -> str:
        io = self.interface(inst.block)
        actual = [name for name, _ in io.inputs]
        declared = inst.block.declared
        missing = "".join("Zero" + camel_case(n) for n in declared if n not in actual)
        extra = "".join("Given" + camel_case(n) for n in actual if n not in declared)
        return missing + extra

    def compile(self) -> Module:
        instances = [Instance(b) for b in _post_order(self.root)]
        self._by_path = {inst.block.path: inst for inst in instances}
        for inst in instances:
            self.members(inst)
            self.forward(inst)
            inst.doc = self.describe(inst)
            inst.key = self.signature(inst)
        groups: dict[tuple, list[Instance]] = {}
        for inst in instances:
            groups.setdefault(inst.key, []).append(inst)
        split: list[list[Instance]] = []
        for group in groups.values():  # numbers no parameter explains in every instance: classes apart
            if all(resolve([slot_ctor(p) for p in _payloads(group, attr)], group) for attr in _slots(group[0])):
                split.append(group)
            else:
                by_text: dict[tuple, list[Instance]] = {}
                for inst in group:
                    by_text.setdefault(
                        tuple(flat(render(slot_ctor(p), inst.block.params)) for p in _slots_of(inst)), []
                    ).append(inst)
                split += by_text.values()
        classes = self.name_classes(split)
        for cls in classes:
            for inst in cls.instances:
                inst.cls = cls
        for cls in classes:  # children first, so a parent builds its children with their final signatures
            self.finish(cls)
        return Module(classes, next(c.name for c in classes if c.instances[0].block is self.root))

    def name_classes(self, groups: list[list[Instance]]) -> list[ClassDef]:
        names = Namespace(MODULE_NAMES | helper_names())
        by_kind: dict[str, list[list[Instance]]] = {}
        for group in groups:
            by_kind.setdefault(group[0].block.kind, []).append(group)
        named: dict[int, str] = {}
        for kind, kind_groups in by_kind.items():
            ranked = sorted(kind_groups, key=lambda g: -len(g))
            for i, group in enumerate(ranked):
                if group[0].block is self.root:
                    named[id(group)] = names.create(camel_case(self.graph.graph["spec"].name))
                    continue
                base = _class_name(kind)
                named[id(group)] = names.create(base if i == 0 else base + (self.variant(group[0]) or "Variant"))
        position = {b.path: i for i, b in enumerate(_post_order(self.root))}
        order = sorted(groups, key=lambda g: position[g[0].block.path])
        return [ClassDef(named[id(g)], g) for g in order]

    def finish(self, cls: ClassDef) -> None:
        """Resolve the numbers, decide which children are built inside, and lay out the class."""
        group = cls.instances
        first = group[0]
        body: list[tuple[str, Expr, str]] = []  # (attr, value, comment)
        init_params: list[str] = []
        for attr, kind, payload in first.members:
            if kind == "slot":
                body.append((attr, resolve([slot_ctor(p) for p in _payloads(group, attr)], group), payload.doc))
                continue
            built = resolve([self.member_expr(k, p) for inst in group for a, k, p in inst.members if a == attr], group)
            if built is None:  # built differently per instance: the caller passes it in
                annotation = {"child": "nn.Module", "list": "list[nn.Module]", "dict": "dict[str, nn.Module]"}[kind]
                cls.inject.add(attr)
                init_params.append(f"{attr}: {annotation}")
                built = {"child": attr, "list": f"nn.ModuleList({attr})", "dict": f"nn.ModuleDict({attr})"}[kind]
            elif kind != "child":
                built = Call("nn.ModuleList" if kind == "list" else "nn.ModuleDict", ((None, built),))
            body.append((attr, built, ""))
        text = "\n".join(flat(value) for _, value, _ in body)
        cls.params = [(n, v) for n, v in first.block.params if re.search(rf"\b{n}\b", text)]
        init = ["self"] + [f"{n}: {type(v).__name__}" for n, v in cls.params] + init_params
        out = [f"class {cls.name}(nn.Module):"]
        out += _docstring(first.doc or f"{cls.name}.", 1)
        out.append("")
        out += signature(1, "__init__", init, "None")
        out.append(f"{INDENT * 2}super().__init__()")
        for attr, value, comment in body:
            out += _with_comment(lines(value, 2, f"self.{attr} = "), comment)
        out.append("")
        out += signature(1, "forward", ["self"] + first.params, first.returns)
        for text_line, comment in first.forward:
            out += _with_comment([INDENT * 2 + text_line], comment)
        cls.text = "\n".join(out) + "\n"

    def ctor(self, inst: Instance) -> Call:
        """The call that builds ``inst``, numbers as :class:`Num` (the enclosing class renders them)."""
        cls = inst.cls
        used = {n for n, _ in cls.params}
        args: list[tuple[str | None, Expr]] = []
        for name, value in inst.block.params:
            if name in used:  # channel counts positional, the rest by name: ChannelLevel(128, groups=32)
                positional = len(args) < 2 and name not in ("groups", "stride", "kernel")
                args.append((None if positional else name, Num(value, (name,), name not in ("stride", "kernel"))))
        for attr, kind, payload in inst.members:
            if attr in cls.inject:
                args.append((attr, self.member_expr(kind, payload)))
        return Call(cls.name, tuple(args))

    def member_expr(self, kind: str, payload) -> Expr:
        if kind == "slot":
            return slot_ctor(payload)
        if kind == "child":
            return self.ctor(self.instance(payload))
        items = tuple(self.ctor(self.instance(c)) for c in payload)
        return Seq(items) if kind == "list" else Seq(items, tuple(c.path.rsplit(".", 1)[1] for c in payload))

    def instance(self, block: Block) -> Instance:
        return self._by_path[block.path]

    def container_groups(self, block: Block):
        return [(a, k, p) for a, k, p in self._members[block.path] if k in ("list", "dict")]


def slot_ctor(s) -> Call:
    """The torch module of a weight slot, as data: the description the runtime also evaluates."""
    return SLOTS[s.kind].ctor(s)


def abstract(e: Expr | Num) -> str:
    """``e`` with its numbers left out: what instances of one class must share."""
    return flat(render(e, (), lambda num: "#"))


def resolve(exprs: list[Expr], group: list[Instance]) -> Expr | None:
    """One rendering of ``exprs`` (one per instance) that is right for every instance of the
    class: each number as a parameter (or half of one) that equals it everywhere, or as a
    literal that is the same everywhere; None when the instances differ in anything else."""
    if len({abstract(e) for e in exprs}) != 1:
        return None
    columns = list(zip(*(_nums(e) for e in exprs), strict=True))
    paramsets = [dict(inst.block.params) for inst in group]
    texts = []
    for column in columns:
        text = _explain(column, paramsets)
        if text is None:
            return None
        texts.append(text)
    chosen = iter(texts)
    return render(exprs[0], (), lambda num: next(chosen))


def _explain(column: tuple[Num, ...], paramsets: list[dict]) -> str | None:
    num = column[0]
    candidates = [name for name in num.prefer if name in paramsets[0]]
    if num.channels:
        candidates += [n for n in paramsets[0] if n not in ("stride", "kernel")]
    for name in candidates:
        values = [p.get(name) for p in paramsets]
        if all(isinstance(v, int) and v == n.value for v, n in zip(values, column, strict=True)):
            return name
    if num.channels:
        for name in candidates:
            halves = zip(paramsets, column, strict=True)
            if all(isinstance(p.get(name), int) and p[name] == 2 * n.value for p, n in halves):
                return f"{name} // 2"
    if len({n.value for n in column}) == 1:
        return str(num.value)
    return None


def _nums(e: Expr | Num) -> list[Num]:
    found: list[Num] = []
    render(e, (), lambda num: found.append(num) or "#")
    return found


def _slots(inst: Instance) -> list[str]:
    return [attr for attr, kind, _ in inst.members if kind == "slot"]


def _slots_of(inst: Instance) -> list:
    return [payload for _, kind, payload in inst.members if kind == "slot"]


def _payloads(group: list[Instance], attr: str) -> list:
    return [p for inst in group for a, _, p in inst.members if a == attr]


def render(e: Expr | Num, params: tuple[tuple[str, object], ...], number=None) -> Expr:
    """``e`` with every :class:`Num` written in terms of ``params`` where one equals it (or by
    ``number`` when given)."""
    if isinstance(e, Num):
        if number is not None:
            return number(e)
        return _explain((e,), [dict(params)]) or str(e.value)
    if isinstance(e, Call):
        return Call(e.func, tuple((k, render(v, params, number)) for k, v in e.args))
    if isinstance(e, Seq):
        return Seq(tuple(render(v, params, number) for v in e.items), e.keys)
    return e


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken or candidate in _RESERVED:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _loops(statements: list[tuple[str, str, int | None]], sizes: dict[str, int]) -> list[tuple[str, str]]:
    """Runs of calls ``x = self.steps[i](...)`` with the same text become a ``for`` loop.

    A run becomes a loop when it has two calls or more, or covers the whole list (so the text
    does not depend on how many steps an instance has).
    """
    pattern = re.compile(r"self\.(\w+)\[(\d+)\]\(")
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(statements):
        text, comment, _ = statements[i]
        m = pattern.search(text)
        if m is None or comment or m.group(1) not in sizes:
            out.append((text, comment))
            i += 1
            continue
        attr, start = m.group(1), int(m.group(2))
        var = attr[:-1] if attr.endswith("s") and len(attr) > 1 else "step"
        template = text.replace(m.group(0), f"{var}(", 1)
        j = i + 1
        while j < len(statements):
            n = pattern.search(statements[j][0])
            if not n or statements[j][1] or n.group(1) != attr or int(n.group(2)) != start + j - i:
                break
            if statements[j][0].replace(n.group(0), f"{var}(", 1) != template:
                break
            j += 1
        end = start + j - i
        if j - i < 2 and not (start == 0 and end == sizes[attr]):
            out.append((text, comment))
            i += 1
            continue
        span = "" if (start, end) == (0, sizes[attr]) else f"[{start}:]" if end == sizes[attr] else f"[{start}:{end}]"
        out.append((f"for {var} in self.{attr}{span}:", ""))
        out.append((INDENT + template, ""))
        i = j
    return out


def _with_comment(block_lines: list[str], comment: str) -> list[str]:
    if not comment:
        return block_lines
    if len(block_lines) == 1 and len(block_lines[0]) + 2 + len(comment) + 2 <= LINE:
        return [f"{block_lines[0]}  # {comment}"]
    indent = block_lines[0][: len(block_lines[0]) - len(block_lines[0].lstrip())]
    return [f"{indent}# {comment}"] + block_lines


def _docstring(text: str, depth: int) -> list[str]:
    pad = INDENT * depth
    paragraphs = text.replace("\\", "/").replace('"""', "'''").split("\n\n")
    wrapped = []
    for paragraph in paragraphs:
        wrapped.append(_wrap(paragraph, LINE - len(pad)))
    body = "\n\n".join(wrapped).split("\n")
    if len(body) == 1 and len(pad) + 6 + len(body[0]) <= LINE:
        return [f'{pad}"""{body[0]}"""']
    return [f'{pad}"""{body[0]}'] + [f"{pad}{line}" if line else "" for line in body[1:]] + [f'{pad}"""']


def _wrap(paragraph: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(paragraph, width=min(width, 92), break_long_words=False, break_on_hyphens=False))


def _post_order(block: Block) -> list[Block]:
    out: list[Block] = []
    for child in block.children:
        out += _post_order(child)
    return out + [block]


def compile_classes(graph: nx.DiGraph) -> Module:
    return _Compiler(graph).compile()
