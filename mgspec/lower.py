"""Stage 3: a validated :class:`~mgspec.schema.Spec` -> the graph IR.

This module is the one place where the networks' algorithms are written. Every backend
(runtime :mod:`mgspec.build`, source :mod:`mgspec.codegen`) and every count consumes the graph
it produces, after the optimisation passes (:mod:`mgspec.passes`).

Each block is first *declared* -- its module path, constructor numbers and weight slots, in
the order the modules are created (so state_dict keys agree in order everywhere) -- and then
*run*: its operator nodes are emitted in execution order, tagged with the block that runs
them, and its interface (named inputs and outputs) is recorded. Declaring before running lets
a block apply weights owned by a child that runs later (the FAS restriction applies the
coarse level's ``A`` before the coarse level's smoothing). Slot names are module paths built
from spec names (``levels.l2.cycle.coarse.A``), so editing one level never renames another.

The algorithms (docs/architectures.md has the derivations):

- MgNet smoothing step: ``u <- u + act(norm2(B(act(norm1(f - A(u))))))`` (act and norm are
  the spec's layers, :mod:`mgspec.layers`; ReLU and BatchNorm by default).
- FAS between resolution levels: ``u' = Pi(u)``, ``f' = R(relu(f - A(u))) + A'(u')``.
- SiC channel V-cycle on channel level k: pre-smoothing; then either
  ``u_c = bn(Pi_k(u))``, ``f_c = bn(R_k(f - A_k(u))) + A_{k+1}(u_c)``,
  ``u <- u + bn(P_k(V_{k+1}(f_c, u_c)))`` or, on the coarsest level, one more smoothing step;
  then post-smoothing.

The lowering is literal: u starts as an explicit zero on level 1 (and in every MGIC block),
and ``A(u)`` is applied wherever the algorithm writes it. Removing the provably zero work and
the repeated applications is the job of the passes, so ``mgspec count --no-optimize`` gives
the algorithm's own MACs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import networkx as nx

from mgspec.errors import SpecError
from mgspec.ir import OPS, Block, Node, Slot, add_node
from mgspec.layers import resolve as resolve_layers
from mgspec.load import Source, format_path
from mgspec.schema import ChannelGrid, MgNetGrid, ResNetGrid, Spec


@dataclass
class _Block:
    """A block while it is lowered (frozen into :class:`Block` at the end)."""

    kind: str
    path: str
    params: tuple
    doc: str
    inputs: tuple = ()
    outputs: tuple = ()
    binds: tuple = ()
    children: list[_Block] = field(default_factory=list)

    def param(self, name: str):
        return dict(self.params)[name]

    def freeze(self) -> Block:
        children = tuple(c.freeze() for c in self.children)
        declared = tuple(name for name, _ in self.inputs)
        return Block(
            self.kind, self.path, self.params, self.inputs, self.outputs, self.binds, self.doc, children, declared
        )


class _Lowering:
    def __init__(self, spec: Spec, source: Source | None) -> None:
        self.spec = spec
        self.source = source
        self.layer = resolve_layers(spec.layers)  # the layer choices, resolved once
        self.graph = nx.DiGraph()
        self.slots: dict[str, Slot] = {}
        self.level = ""
        self.running = ""  # the path of the block whose nodes are being emitted
        self.owner: _Block | None = None  # the block being declared
        self._ids: dict[str, int] = {}
        self.alias: dict[str, str] = {}  # a slot name a block applies -> the slot it shares

    # -- errors -----------------------------------------------------------------------
    def error(self, message: str, origin: tuple, hint: str | None = None) -> SpecError:
        loc = self.source.locate(origin) if self.source else None
        return SpecError(message, loc, format_path(origin) or None, hint)

    # -- declaring: blocks and their slots ----------------------------------------------
    @contextmanager
    def declare(self, kind: str, path: str, params: tuple = (), doc: str = "") -> Iterator[_Block]:
        """A block whose slots (and child blocks) are declared inside the ``with``."""
        block = _Block(kind, path, params, doc)
        parent, self.owner = self.owner, block
        try:
            yield block
        finally:
            self.owner = parent
        if parent is not None:
            parent.children.append(block)

    def slot(self, attr: str, kind: str, cin: int, cout: int, operator: str, origin: tuple, **kw) -> str:
        owner = self.owner.path
        name = f"{owner}.{attr}" if owner else attr
        assert name not in self.slots, f"slot {name} declared twice"
        self.slots[name] = Slot(
            name, kind, cin, cout, operator=operator, level=self.level, owner=owner, origin=origin, **kw
        )
        return name

    def conv_slot(self, attr, cin, cout, operator, origin, kernel=3, stride=1, groups=1, doc="") -> str:
        return self.slot(
            attr, "conv", cin, cout, operator, origin, kernel=kernel, stride=stride, groups=groups, doc=doc
        )

    def norm_slot(self, attr: str, c: int, origin: tuple) -> str | None:
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

    def owned(self, path: str, attr: str) -> str | None:
        """Block ``path``'s norm slot ``attr`` (``{n}1``) as declared, or None (no norm)."""
        name = f"{path}.{attr.format(n=self.layer.norm.op)}" if self.layer.norm else None
        return name if name in self.slots else None

    # -- the equations in docstrings and comments: the spec's layers by their symbols --------
    def act_text(self, x: str) -> str:
        return f"{self.layer.act.symbol}({x})"

    def norm_text(self, x: str, suffix: str = "") -> str:
        return f"{self.layer.norm.symbol}{suffix}({x})" if self.layer.norm else x

    # -- running: nodes ---------------------------------------------------------------
    @contextmanager
    def run(self, block: _Block, binds: tuple[str, ...], **inputs: str) -> Iterator[_Block]:
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
        assert len(args) == OPS[op].arity, (op, args)
        base = slot or (f"{self.running}.{op}" if self.running else op)
        n = self._ids[base] = self._ids.get(base, 0) + 1
        node_id = base if n == 1 else f"{base}#{n}"
        payload = Node(op, args, cin, cout, slot, self.level, self.running, label or op, name, note, origin)
        add_node(self.graph, node_id, payload)
        return node_id

    def conv(self, x: str, slot: str, label: str = "", name: str = "", note: str = "") -> str:
        while slot in self.alias:
            slot = self.alias[slot]
        s = self.slots[slot]
        return self.emit("conv", (x,), s.cin, s.cout, label or s.operator, slot, s.origin, name, note)

    def norm(self, x: str, slot: str | None, name: str = "", note: str = "") -> str:
        """Normalise ``x`` with ``slot`` (a norm slot; None: no normalisation)."""
        if slot is None:
            return x
        s = self.slots[slot]
        return self.emit(s.kind, (x,), s.cin, s.cout, s.operator, slot, s.origin, name, note)

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

    # -- channel arithmetic -----------------------------------------------------------
    def scaled(self, channels: int, origin: tuple) -> int:
        c = channels * self.spec.width
        if abs(c - round(c)) > 1e-9:
            raise self.error(
                f"width {self.spec.width:g} x {channels} channels = {c:g} is not a whole number of channels",
                ("width",),
            )
        return int(round(c))

    def level_widths(self, grid: MgNetGrid | ResNetGrid) -> list[int]:
        """Every resolution level's channels after the width multiplier."""
        return [
            self.scaled(lv.channels, ("resolution_grid", "levels", i, "channels")) for i, lv in enumerate(grid.levels)
        ]

    def channel_widths(self, c: int, grid: ChannelGrid, origin: tuple, level: str) -> list[int]:
        if grid.coarsest > c:
            raise self.error(
                f"coarsest width {grid.coarsest} is wider than level {level} ({c} channels)",
                origin + ("coarsest",),
                hint=f"use a coarsest width <= {c}",
            )
        widths = grid.widths(c)
        for w in widths[:-1]:
            if w % grid.group_size:
                raise self.error(
                    f"group size {grid.group_size} does not divide channel level width {w} of level {level} "
                    f"(widths {', '.join(map(str, widths))})",
                    origin + ("group_size",),
                    hint="choose a group size that divides every grouped channel level width",
                )
        return widths

    def grid_origin(self, index: int) -> tuple:
        level = self.spec.resolution_grid.levels[index]
        if "channel_grid" in level.model_fields_set:
            return ("resolution_grid", "levels", index, "channel_grid")
        return ("channel_grid",)

    # -- stem and head ----------------------------------------------------------------
    def stem(self, x: str, cin: int, c: int, out: str) -> str:
        self.level = "stem"
        stem = self.spec.stem
        to = "f, the data of level 1" if out == "f" else "x, the features of stage 1"
        body = self.act_text(self.norm_text("conv(x)"))
        doc = f"{'maxpool(' if stem.maxpool else ''}{body}{')' if stem.maxpool else ''}: the image to {to}."
        with self.declare("stem", "stem", (("cin", cin), ("cout", c)), doc) as b:
            conv = self.conv_slot("conv", cin, c, "stem", ("stem",), kernel=stem.kernel, stride=stem.stride)
            bn = self.norm_slot("{n}", c, ("stem",))
        with self.run(b, (out,), x=x):
            y = self.act(self.norm(self.conv(x, conv), bn), c)
            if stem.maxpool:
                y = self.emit("maxpool", (y,), c, c, "maxpool", origin=("stem", "maxpool"))
            b.outputs = (("x", y),)
        return b.outputs[0][1]

    def head(self, u: str, c: int) -> str:
        self.level = "head"
        classes = self.spec.classes
        doc = "Global average pooling, then the linear classifier."
        with self.declare("head", "head", (("cin", c), ("classes", classes)), doc) as b:
            fc = self.slot("fc", "linear", c, classes, "fc", ("head",), bias=self.spec.head.bias)
        with self.run(b, ("logits",), x=u):
            pooled = self.emit("avgpool", (u,), c, c, "avgpool")
            b.outputs = (("logits", self.emit("linear", (pooled,), c, classes, "fc", fc, ("head",))),)
        return b.outputs[0][1]

    # -- MgNet smoothing and the channel V-cycle --------------------------------------
    def declare_step(
        self, path: str, c: int, origin: tuple, own: tuple[str, ...] = (), groups: int = 1, norms: int | None = None
    ) -> _Block:
        params = (("channels", c),) + ((("groups", groups),) if own and groups > 1 else ())
        norms = norms or self.spec.layers.norms_per_step
        with self.declare("smoothing_step", path, params, self.step_doc(norms)) as step:
            for op in own:
                self.conv_slot(op, c, c, op, origin, kernel=self.spec.layers.kernel, groups=groups)
            if norms == 2:
                self.norm_slot("{n}1", c, origin)
                self.norm_slot("{n}2", c, origin)
            else:  # one normalisation per step, after B
                self.norm_slot("{n}", c, origin)
        return step

    def step_doc(self, norms: int) -> str:

        def normed(i: int, x: str) -> str:
            if norms == 1 and i == 1:
                return x
            return self.norm_text(x, str(i) if norms == 2 else "")

        inner = self.act_text(normed(1, "f - A(u)"))
        return f"One MgNet smoothing step: u <- u + {self.act_text(normed(2, f'B({inner})'))}."

    def smoothing_step(self, step: _Block, f: str, u: str, A: str, B: str) -> str:
        """u <- u + act(norm2(B(act(norm1(f - A(u))))))."""
        c, p = step.param("channels"), step.path
        with self.run(step, ("u",), f=f, u=u):
            r = self.sub(f, self.conv(u, A), c, "f - A(u)", name="r")
            first, second = self.owned(p, "{n}1"), self.owned(p, "{n}2") or self.owned(p, "{n}")
            d = self.act(self.norm(self.conv(self.act(self.norm(r, first), c), B), second), c, name="du")
            step.outputs = (("u", self.add(u, d, c, "u + du", name="u")),)
        return step.outputs[0][1]

    def declare_channel_level(
        self,
        path: str,
        widths: list[int],
        k: int,
        grid: ChannelGrid,
        origin: tuple,
        coarsest_group_size: int | None = None,
        alias: dict[str, str] | None = None,
    ) -> _Block:
        """Channel level ``k`` and the coarser ones below it.

        ``alias`` = {op: path}: instead of declaring its level-shared ``op``, this level applies the
        one of the channel level at ``path`` (a second cycle of the level, the second visit of a
        W-cycle, or an equal-width level with ``share_across``).
        """
        w = widths[k]
        coarsest = k == len(widths) - 1
        if coarsest:
            groups = w // coarsest_group_size if coarsest_group_size else 1
            kind, params = "coarsest_channel_level", (("channels", w),) + ((("groups", groups),) if groups > 1 else ())
            coupled = f"grouped A and B (group size {coarsest_group_size})" if groups > 1 else "fully coupled A and B"
            doc = f"The coarsest channel level: {coupled}; the coarse solve is one more smoothing step."
        else:
            groups = w // grid.group_size
            kind, params = "channel_level", (("channels", w), ("groups", groups))
            visits = "once" if grid.cycle == "V" else "twice, the second visit starting from the first's result"
            doc = (
                f"Channel level k of the SiC {grid.cycle}-cycle: pre-smoothing, the coarse correction through level "
                f"k+1 (u <- u + P_k(V_{{k+1}}(f_c, u_c)), visiting it {visits}), post-smoothing. A_k and B_k "
                "are grouped."
            )
        shared = [op for op in ("A", "B") if op in grid.share]
        own = tuple(op for op in ("A", "B") if op not in grid.share)
        kernel = self.spec.layers.kernel
        with self.declare(kind, path, params, doc):
            for op in shared:
                if alias and op in alias:
                    self.alias[f"{path}.{op}"] = f"{alias[op]}.{op}"
                else:
                    role = "data to features" if op == "A" else "feature extractor"
                    self.conv_slot(op, w, w, op, origin, kernel=kernel, groups=groups, doc=f"{op}_k: {role}")
            # The paper's one-normalisation variant keeps two in the coarser levels and the solve.
            coarse_norms = grid.norms_per_step or self.spec.layers.norms_per_step
            norms = self.spec.layers.norms_per_step if k == 0 else coarse_norms
            for i in range(grid.pre_smoothing):
                self.declare_step(f"{path}.pre.{i}", w, origin, own, groups, norms)
            if coarsest:
                self.declare_step(f"{path}.solve", w, origin, own, groups, coarse_norms)
            else:
                h = w // grid.coarsening
                t = h if grid.transfers == "pairwise" else 1
                self.conv_slot("R", w, h, "R_c", origin, kernel=1, groups=t, doc="R_k: restricts the residual")
                self.norm_slot("{n}_R", h, origin)
                self.conv_slot("Pi", w, h, "Pi_c", origin, kernel=1, groups=t, doc="Π_k: restricts u")
                self.norm_slot("{n}_Pi", h, origin)
                self.conv_slot("P", h, w, "P_c", origin, kernel=1, groups=t, doc="P_k: prolongs the coarse result")
                self.norm_slot("{n}_P", w, origin)
                below = {op: f"{source}.coarse" for op, source in (alias or {}).items()}
                self.declare_channel_level(f"{path}.coarse", widths, k + 1, grid, origin, coarsest_group_size, below)
                if grid.cycle == "W":  # the second visit shares the first's A_k, B_k; its norms are its own
                    again = {op: f"{path}.coarse" for op in shared}  # which may alias onwards
                    self.declare_channel_level(
                        f"{path}.coarse2", widths, k + 1, grid, origin, coarsest_group_size, again
                    )
            for i in range(grid.post_smoothing):
                self.declare_step(f"{path}.post.{i}", w, origin, own, groups, norms)
        return self.owner.children[-1]

    @staticmethod
    def children(block: _Block, attr: str) -> list[_Block]:
        return [
            c for c in block.children if c.path.startswith(f"{block.path}.{attr}.") or c.path == f"{block.path}.{attr}"
        ]

    def operator(self, block: _Block, op: str, which: str) -> str:
        """The slot of ``op`` that the first or last smoothing step of a channel level applies."""
        steps = self.children(block, "pre") + self.children(block, "solve") + self.children(block, "post")
        if which == "last pre":
            steps = self.children(block, "pre")
        step = steps[0] if which == "first" else steps[-1]
        own = f"{step.path}.{op}"
        return own if own in self.slots else f"{block.path}.{op}"

    def channel_cycle(self, block: _Block, f: str, u: str, binds: tuple[str, ...]) -> str:
        """One SiC cycle on the channel level ``block`` (recursing to the coarser ones)."""
        p, w = block.path, block.param("channels")

        def step(s: _Block, f: str, u: str) -> str:
            return self.smoothing_step(s, f, u, self.operator_of(s, block, "A"), self.operator_of(s, block, "B"))

        with self.run(block, binds, f=f, u=u):
            for s in self.children(block, "pre"):
                u = step(s, f, u)
            coarse = self.children(block, "coarse")
            if coarse:
                h = self.slots[f"{p}.R"].cout
                u_c = self.norm(self.conv(u, f"{p}.Pi"), self.owned(p, "{n}_Pi"), name="u_c", note="u_c = Π_k(u)")
                r = self.sub(f, self.conv(u, self.operator(block, "A", "last pre")), w, "f - A(u)")
                restricted = self.norm(self.conv(r, f"{p}.R"), self.owned(p, "{n}_R"))
                A_coarse = self.operator(coarse[0], "A", "first")
                f_c = self.add(
                    restricted,
                    self.conv(u_c, A_coarse),
                    h,
                    "f_c",
                    name="f_c",
                    note="f_c = R_k(f - A_k(u)) + A_{k+1}(u_c)",
                )
                e = self.channel_cycle(coarse[0], f_c, u_c, ("e",))
                for again in self.children(block, "coarse2"):
                    e = self.channel_cycle(again, f_c, e, ("e",))
                P = self.norm(self.conv(e, f"{p}.P"), self.owned(p, "{n}_P"))
                u = self.add(u, P, w, "u + P(e)", name="u", note="u <- u + P_k(e)")
            else:
                u = step(self.children(block, "solve")[0], f, u)
            for s in self.children(block, "post"):
                u = step(s, f, u)
            block.outputs = (("u", u),)
        return u

    def operator_of(self, step: _Block, level: _Block, op: str) -> str:
        own = f"{step.path}.{op}"
        return own if own in self.slots else f"{level.path}.{op}"

    # -- families ---------------------------------------------------------------------
    def mgnet(self, x: str, grid: MgNetGrid) -> str:
        spec = self.spec
        widths = self.level_widths(grid)
        f = self.stem(x, spec.input.channels, widths[0], "f")
        self.level = spec.level_name(0)
        u = self.zero(f, widths[0])
        fine_A = None
        previous: tuple[int, tuple, _Block | str] | None = None  # (width, hierarchy, what share_across shares)
        for i, level in enumerate(grid.levels):
            name = spec.level_name(i)
            self.level = name
            path = f"levels.{name}"
            origin = ("resolution_grid", "levels", i)
            c = widths[i]
            cin = widths[i - 1] if i else c
            cgrid = spec.level_channel_grid(i)
            transfers = (i > 0 or grid.level1_transfers) and grid.restriction != "avgpool"
            if grid.restriction == "avgpool" and i > 0 and c % cin:
                raise self.error(
                    f"level {name} has {c} channels, not a multiple of the {cin} channels of the level before: "
                    "average-pool restriction repeats channels and cannot map them",
                    origin + ("channels",),
                    hint="use restriction: depthwise or dense",
                )
            if cgrid is not None:
                if "share" in grid.model_fields_set:
                    raise self.error(
                        "with a channel grid, what the smoothing steps share is channel_grid.share",
                        ("resolution_grid", "share"),
                        hint="remove resolution_grid.share; set channel_grid.share",
                    )
                cwidths = self.channel_widths(c, cgrid, self.grid_origin(i), name)
                if grid.group_size is not None and cwidths[-1] % grid.group_size:
                    raise self.error(
                        f"group size {grid.group_size} does not divide the {cwidths[-1]} channels of level {name}'s "
                        "coarsest channel level",
                        ("resolution_grid", "group_size"),
                    )
            groups = 1
            if cgrid is None and grid.group_size is not None:
                if c % grid.group_size:
                    raise self.error(
                        f"group size {grid.group_size} does not divide the {c} channels of level {name}",
                        ("resolution_grid", "group_size"),
                    )
                groups = c // grid.group_size
            family = "mgiad" if cgrid is not None else "mgnet"
            kind = f"{family}_{'first_level' if i == 0 else 'level'}"
            params = (("cin", cin), ("channels", c)) + ((("groups", groups),) if groups > 1 else ())
            cycles = "one channel cycle (SiC)" if level.steps == 1 else f"{level.steps} channel cycles sharing A_k, B_k"
            smoothing = cycles if cgrid is not None else "MgNet smoothing steps"
            doc = (
                f"The finest resolution level: {smoothing} from u = 0."
                if i == 0
                else f"A resolution level entered by FAS (u' = Π(u), f' = R({self.act_text('f - A(u)')}) + A'(u')), "
                f"then {smoothing}."
            )
            shared: dict[str, str] = {}
            across = previous if previous is not None and previous[0] == c else None
            with self.declare(kind, path, params, doc) as block:
                if transfers:
                    kw = {"stride": 2, "groups": 1 if grid.restriction == "dense" else math.gcd(cin, c)}
                    self.conv_slot("R", cin, c, "R", origin, doc="R: restricts the residual", **kw)
                    self.conv_slot("Pi", cin, c, "Pi", origin, doc="Π: restricts u", **kw)
                if cgrid is not None:
                    hierarchy = (tuple(cwidths), cgrid)
                    alias = None
                    if across is not None and across[1] == hierarchy and grid.share_across:
                        alias = {op: across[2] for op in grid.share_across if op in cgrid.share}
                    cyc = []
                    for j in range(level.steps):
                        where = f"{path}.cycle" if level.steps == 1 else f"{path}.cycles.{j}"
                        if j > 0:  # later cycles share the first's level-shared operators
                            alias = {op: cyc[0].path for op in cgrid.share}
                        cyc.append(
                            self.declare_channel_level(
                                where, cwidths, 0, cgrid, self.grid_origin(i), grid.group_size, alias
                            )
                        )
                    first_A = self.operator(cyc[0], "A", "first")
                    last_A = self.operator(cyc[-1], "A", "last")
                    previous = (c, hierarchy, cyc[0].path)
                else:
                    for op in ("A", "B"):
                        if op not in grid.share:
                            continue
                        if across is not None and op in grid.share_across and across[1] == groups:
                            shared[op] = self.alias[f"{path}.{op}"] = across[2][op]
                        else:
                            shared[op] = self.conv_slot(
                                op,
                                c,
                                c,
                                op,
                                origin,
                                kernel=spec.layers.kernel,
                                groups=groups,
                                doc=f"{op}, shared by every step",
                            )
                    own = tuple(op for op in ("A", "B") if op not in shared)
                    steps = [self.declare_step(f"{path}.steps.{s}", c, origin, own, groups) for s in range(level.steps)]
                    first_A = shared.get("A", f"{path}.steps.0.A")
                    last_A = shared.get("A", f"{path}.steps.{level.steps - 1}.A")
                    previous = (c, groups, shared)
            with self.run(block, ("u",) if i == 0 else ("f", "u"), f=f, u=u):
                if i > 0:
                    r = self.act(
                        self.sub(f, self.conv(u, fine_A, "A_fine"), cin, "f - A(u)"),
                        cin,
                        name="r",
                        note=f"r = {self.act_text('f - A(u)')} on the finer level",
                    )
                    u = self.restrict(u, f"{path}.Pi", cin, c, "Pi", name="u", note="u' = Π(u)")
                    R = self.restrict(r, f"{path}.R", cin, c, "R")
                    f = self.add(R, self.conv(u, first_A), c, "f", name="f", note="f' = R(r) + A'(u')")
                if cgrid is not None:
                    for cycle in cyc:
                        u = self.channel_cycle(cycle, f, u, ("u",))
                else:
                    for step in steps:
                        A = shared.get("A", f"{step.path}.A")
                        B = shared.get("B", f"{step.path}.B")
                        u = self.smoothing_step(step, f, u, A, B)
                block.outputs = (("u", u),) if i == 0 else (("f", f), ("u", u))
            fine_A = last_A
        return self.head(u, widths[-1])

    def restrict(self, x: str, slot: str, cin: int, c: int, label: str, name: str = "", note: str = "") -> str:
        """R or Π between resolution levels: a learned strided conv, or average pooling (no weights)."""
        if self.spec.resolution_grid.restriction == "avgpool":
            return self.emit("avgpool2", (x,), cin, c, label, name=name, note=note)
        return self.conv(x, slot, name=name, note=note)

    def resnet(self, x: str, grid: ResNetGrid) -> str:
        spec = self.spec
        widths = self.level_widths(grid)
        h = self.stem(x, spec.input.channels, widths[0], "x")
        cin = widths[0]
        for i, level in enumerate(grid.levels):
            name = spec.level_name(i)
            self.level = name
            path = f"levels.{name}"
            origin = ("resolution_grid", "levels", i)
            c = widths[i]
            cgrid = spec.level_channel_grid(i)
            cwidths = self.channel_widths(c, cgrid, self.grid_origin(i), name) if cgrid else None
            with self.declare(
                "resnet_level", path, (("channels", c),), "A stage of blocks at one resolution."
            ) as stage:
                blocks = []
                for b in range(level.steps):
                    bpath = f"{path}.blocks.{b}"
                    stride = 2 if (b == 0 and i > 0) else 1
                    if cwidths and stride == 1 and cin == c:
                        with self.declare(
                            "cycle_block",
                            bpath,
                            (("channels", c),),
                            f"MGIC block: x <- {self.act_text('x + V(f = x, u = 0)')}, one channel V-cycle.",
                        ) as block:
                            self.declare_channel_level(f"{bpath}.cycle", cwidths, 0, cgrid, self.grid_origin(i))
                    else:
                        block = self.declare_basic_block(bpath, cin, c, stride, grid.shortcut, origin)
                    blocks.append(block)
                    cin = c
            with self.run(stage, ("x",), x=h):
                for block in blocks:
                    with self.run(block, ("x",), x=h):
                        if block.kind == "cycle_block":
                            u = self.zero(h, c)
                            v = self.channel_cycle(block.children[0], h, u, ("v",))
                            h = self.act(self.add(h, v, c, "x + V(x)"), c)
                        else:
                            h = self.basic_block(block, h)
                        block.outputs = (("x", h),)
                stage.outputs = (("x", h),)
        return self.head(h, widths[-1])

    @staticmethod
    def shortcut_kind(cin: int, cout: int, stride: int, option: str) -> str:
        if cin == cout and stride == 1:
            return "identity"
        return option

    def declare_basic_block(self, path: str, cin: int, c: int, stride: int, option: str, origin: tuple) -> _Block:
        shortcut = self.shortcut_kind(cin, c, stride, option)
        if shortcut == "option_a" and (c < cin or stride != 2):
            raise self.error(
                f"option-A shortcuts need stride 2 and at least as many output as input channels ({cin} -> {c})",
                origin + ("channels",),
                hint="use shortcut: projection",
            )
        kind = "basic_block" if shortcut == "identity" else f"basic_block_{shortcut}"
        described = {
            "identity": "x",
            "projection": f"{self.norm_text('proj(x)')}, a strided 1x1 projection",
            "option_a": "x subsampled by 2 and zero-padded to the new channels (option A)",
        }[shortcut]
        params = (("cin", cin), ("cout", c), ("stride", stride))
        body = self.norm_text(f"conv2({self.act_text(self.norm_text('conv1(x)', '1'))})", "2")
        doc = f"ResNet basic block: {self.act_text(body + ' + s')} with shortcut s = {described}."
        with self.declare(kind, path, params, doc) as block:
            k = self.spec.layers.kernel
            self.conv_slot("conv1", cin, c, "conv", origin, kernel=k, stride=stride)
            self.norm_slot("{n}1", c, origin)
            self.conv_slot("conv2", c, c, "conv", origin, kernel=k)
            self.norm_slot("{n}2", c, origin)
            if shortcut == "projection":
                self.conv_slot("proj", cin, c, "proj", origin, kernel=1, stride=stride)
                self.norm_slot("proj_{n}", c, origin)
        return block

    def basic_block(self, block: _Block, x: str) -> str:
        """act(norm2(conv2(act(norm1(conv1(x))))) + shortcut(x))."""
        p, cin, c = block.path, block.param("cin"), block.param("cout")
        h = self.act(self.norm(self.conv(x, f"{p}.conv1"), self.owned(p, "{n}1")), c)
        y = self.norm(self.conv(h, f"{p}.conv2"), self.owned(p, "{n}2"), name="y")
        if block.kind == "basic_block":
            s = x
        elif block.kind == "basic_block_projection":
            s = self.norm(self.conv(x, f"{p}.proj"), self.owned(p, "proj_{n}"))
        else:
            s = self.emit("shortcut_a", (x,), cin, c, "shortcut")
        return self.act(self.add(y, s, c, "y + shortcut(x)"), c)

    def lower(self) -> nx.DiGraph:
        grid = self.spec.resolution_grid
        channels = self.spec.input.channels
        title = f"{self.spec.name}: the {self.spec.family} network compiled by mgspec."
        with self.declare("model", "", (), title) as root:
            pass
        self.owner = root  # every top-level block is declared into the model
        x = self.emit("input", (), channels, channels, "input", name="x")
        with self.run(root, ("logits",), x=x):
            logits = self.mgnet(x, grid) if isinstance(grid, MgNetGrid) else self.resnet(x, grid)
            self.level = ""
            n = self.spec.classes
            root.outputs = (("logits", self.emit("output", (logits,), n, n, "output")),)
        self.graph.graph.update(slots=self.slots, blocks=root.freeze(), spec=self.spec)
        return self.graph


def lower(spec: Spec, source: Source | None = None) -> nx.DiGraph:
    """Lower a spec to the literal graph IR (unverified, unoptimised; see :mod:`mgspec.passes`)."""
    graph = _Lowering(spec, source).lower()
    graph.graph["source"] = source.name if source else "<spec>"
    graph.graph["locations"] = dict(source.locations) if source else {}  # where later checks point
    graph.graph["sha256"] = source.sha256 if source else ""
    return graph
