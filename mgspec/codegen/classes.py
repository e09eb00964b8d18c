"""The block tree and its nodes -> Python classes, one per distinct block signature.

Input: a verified (optimised) graph. Output: :class:`Module` -- the class definitions in
dependency order and the model's class name. Nothing here knows a network: every line of a
``forward`` is rendered from a node the block runs (:mod:`.forward`), every line of an
``__init__`` from a slot the block owns or a child block, so what the lowering writes (and the
passes rewrite) is what the generated file says. The rules, as torch.fx's CodeGen at block
level:

- **Interface** (:mod:`.interface`). A block's inputs are the values its nodes read that are
  computed outside it; weights it applies but an enclosing or sibling block owns become
  ``forward`` arguments (``SmoothingStep(f, u, A, B)``); its outputs are the values it
  declared that it computes.
- **Statements** (:mod:`.forward`, :mod:`.statements`). Values the math names or uses more
  than once are variables, the rest inline; a child block is a call; consecutive calls of a
  ``ModuleList``'s blocks that differ only in the index become a ``for`` loop.
- **Classes.** Two blocks share a class when their code is the same up to the numbers the
  block declares as constructor parameters (channels, groups). A child whose construction
  is the same in every instance is built in ``__init__``; otherwise it is a constructor
  argument, so the channel hierarchy is built by the model and runs as a recursion.
- **Names** (:mod:`.namespace`). Every name in the file is made or checked by one service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import networkx as nx

from mgspec.codegen.forward import Body
from mgspec.codegen.helpers import helper_names
from mgspec.codegen.interface import Tree
from mgspec.codegen.layout import class_text
from mgspec.codegen.namespace import Namespace, camel_case, class_name, module_namespace
from mgspec.codegen.pretty import Call, Expr, Num, Seq, flat
from mgspec.codegen.statements import Statement
from mgspec.ir import Block, within
from mgspec.ops import SLOTS


@dataclass
class Instance:
    block: Block
    key: tuple = ()
    members: list[tuple[str, str, object]] = field(default_factory=list)  # (attr, kind, payload)
    forward: tuple[Statement, ...] = ()
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


class _Compiler:
    def __init__(self, graph: nx.DiGraph) -> None:
        self.graph = graph
        self.tree = Tree(graph)
        self.root = self.tree.root
        self._members: dict[str, list] = {}
        self._by_path: dict[str, Instance] = {}

    def forward(self, inst: Instance) -> None:
        body = Body(self.tree, inst.block)
        sizes = {attr: len(group) for attr, kind, group in self._members[inst.block.path] if kind in ("list", "dict")}
        inst.forward = tuple(body.statements(sizes))
        inst.params, inst.returns = body.params, body.returns

    # -- __init__ ---------------------------------------------------------------------
    def members(self, inst: Instance) -> None:
        """The block's modules in creation order: owned slots and children, as first declared.
        Their attribute names are their paths' parts, as the runtime names them (state_dict keys)."""
        block = inst.block
        if block.path in self._members:
            inst.members = self._members[block.path]
            return
        order: dict[str, None] = {}
        for s in self.tree.slots.values():
            if within(s.owner, block.path):
                rel = s.name[len(block.path) + 1 :] if block.path else s.name
                order[rel.split(".")[0]] = None
        for child in block.children:
            rel = child.path[len(block.path) + 1 :] if block.path else child.path
            order[rel.split(".")[0]] = None
        attrs = Namespace()
        for attr in order:
            attrs.claim(attr)
            path = f"{block.path}.{attr}" if block.path else attr
            if path in self.tree.slots and self.tree.slots[path].owner == block.path:
                inst.members.append((attr, "slot", self.tree.slots[path]))
            elif path in self.tree.blocks:
                inst.members.append((attr, "child", self.tree.blocks[path]))
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
        return (inst.block.kind, names, inst.doc, tuple(init), tuple(inst.params), inst.returns, inst.forward)

    def describe(self, inst: Instance) -> str:
        block, io = inst.block, self.tree.interface(inst.block)
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
        io = self.tree.interface(inst.block)
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
        classes = self.name_classes(_group(instances))
        for cls in classes:
            for inst in cls.instances:
                inst.cls = cls
        for cls in classes:  # children first, so a parent builds its children with their final signatures
            self.finish(cls)
        return Module(classes, next(c.name for c in classes if c.instances[0].block is self.root))

    def name_classes(self, groups: list[list[Instance]]) -> list[ClassDef]:
        names = module_namespace(helper_names())
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
                base = class_name(kind)
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
        scope = Namespace({"self"})  # __init__'s parameters: passed by keyword, so never renamed
        for n in [n for n, _ in cls.params] + sorted(cls.inject):
            scope.claim(n)
        init = [f"{n}: {type(v).__name__}" for n, v in cls.params] + init_params
        cls.text = class_text(
            cls.name, first.doc or f"{cls.name}.", init, body, (first.params, first.returns, first.forward)
        )

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
            return self.ctor(self._by_path[payload.path])
        items = tuple(self.ctor(self._by_path[c.path]) for c in payload)
        return Seq(items) if kind == "list" else Seq(items, tuple(c.path.rsplit(".", 1)[1] for c in payload))


def _group(instances: list[Instance]) -> list[list[Instance]]:
    """Instances by signature; a group whose numbers no parameter explains in every instance is
    split by its constructors' text (classes apart)."""
    groups: dict[tuple, list[Instance]] = {}
    for inst in instances:
        groups.setdefault(inst.key, []).append(inst)
    split: list[list[Instance]] = []
    for group in groups.values():
        if all(resolve([slot_ctor(p) for p in _payloads(group, attr)], group) for attr in _slots(group[0])):
            split.append(group)
        else:
            by_text: dict[tuple, list[Instance]] = {}
            for inst in group:
                by_text.setdefault(
                    tuple(flat(render(slot_ctor(p), inst.block.params)) for p in _slots_of(inst)), []
                ).append(inst)
            split += by_text.values()
    return split


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


def _post_order(block: Block) -> list[Block]:
    out: list[Block] = []
    for child in block.children:
        out += _post_order(child)
    return out + [block]


def compile_classes(graph: nx.DiGraph) -> Module:
    return _Compiler(graph).compile()
