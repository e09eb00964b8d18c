"""Stage 3: a validated :class:`~mgspec.schema.Spec` -> the graph IR.

Each block kind has one lowering function that declares its weight slots (in the order the
generated ``__init__`` creates them, so state_dict keys agree in order too) and emits its
operator nodes (in execution order). Slot names are module paths built from spec names
(``levels.l2.cycle.coarse.A``), so editing one level never renames another.

The algorithms (docs/architectures.md has the derivations):

- MgNet smoothing step: ``u <- u + relu(bn2(B(relu(bn1(f - A(u))))))``.
- FAS between resolution levels: ``u' = Pi(u)``, ``f' = R(relu(f - A(u))) + A'(u')``.
- SiC channel V-cycle on channel level k: pre-smoothing; then either
  ``u_c = bn(Pi_k(u))``, ``f_c = bn(R_k(f - A_k(u))) + A_{k+1}(u_c)``,
  ``u <- u + bn(P_k(V_{k+1}(f_c, u_c)))`` or, on the coarsest level, one more smoothing step;
  then post-smoothing.

u starts at zero on level 1 (and in every MGIC block), and ``A(0) = 0`` exactly since convs
have no bias, so the first step's ``f - A(u)`` is lowered as ``f``: provably zero work is
never emitted and never counted as MACs.
"""

from __future__ import annotations

import networkx as nx

from mgspec.errors import SpecError
from mgspec.ir import OPS, Block, Node, Slot
from mgspec.load import Source, format_path
from mgspec.schema import ChannelGrid, MgNetGrid, ResNetGrid, Spec

_ZERO = "<zero>"  # the initial u: no node, A(_ZERO) is never emitted


class _Lowering:
    def __init__(self, spec: Spec, source: Source | None) -> None:
        self.spec = spec
        self.source = source
        self.graph = nx.DiGraph()
        self.slots: dict[str, Slot] = {}
        self.level = ""

    # -- errors -----------------------------------------------------------------------
    def error(self, message: str, origin: tuple, hint: str | None = None) -> SpecError:
        loc = self.source.locate(origin) if self.source else None
        return SpecError(message, loc, format_path(origin) or None, hint)

    # -- slots and nodes --------------------------------------------------------------
    def slot(self, name: str, kind: str, cin: int, cout: int, operator: str, origin: tuple, **kw) -> str:
        assert name not in self.slots, f"slot {name} declared twice"
        self.slots[name] = Slot(name, kind, cin, cout, operator=operator, level=self.level, origin=origin, **kw)
        return name

    def conv_slot(self, name, cin, cout, operator, origin, kernel=3, stride=1, groups=1) -> str:
        return self.slot(name, "conv", cin, cout, operator, origin, kernel=kernel, stride=stride, groups=groups)

    def bn_slot(self, name: str, c: int, origin: tuple) -> str:
        return self.slot(name, "bn", c, c, "BN", origin)

    def emit(
        self,
        op: str,
        args: tuple[str, ...],
        cin: int,
        cout: int,
        scope: str,
        label: str,
        slot: str | None = None,
        origin: tuple = (),
    ) -> str:
        assert len(args) == OPS[op][0], (op, args)
        if slot is not None:
            base = slot
        else:
            base = f"{scope}.{op}" if scope else op
        node_id, n = base, 1
        while node_id in self.graph:
            n += 1
            node_id = f"{base}#{n}"
        self.graph.add_node(node_id, node=Node(op, args, cin, cout, slot, self.level, scope, label, origin))
        for position, arg in enumerate(args):
            self.graph.add_edge(arg, node_id, arg=position)
        return node_id

    def conv(self, x: str, slot: str, label: str = "") -> str:
        s = self.slots[slot]
        return self.emit("conv", (x,), s.cin, s.cout, slot.rpartition(".")[0], label or s.operator, slot, s.origin)

    def bn(self, x: str, slot: str) -> str:
        s = self.slots[slot]
        return self.emit("bn", (x,), s.cin, s.cout, slot.rpartition(".")[0], "BN", slot, s.origin)

    def relu(self, x: str, c: int, scope: str) -> str:
        return self.emit("relu", (x,), c, c, scope, "relu")

    def add(self, a: str, b: str, c: int, scope: str, label: str = "+") -> str:
        return self.emit("add", (a, b), c, c, scope, label)

    def sub(self, a: str, b: str, c: int, scope: str, label: str = "-") -> str:
        return self.emit("sub", (a, b), c, c, scope, label)

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
        widths = [c]
        while widths[-1] % 2 == 0 and widths[-1] // 2 >= grid.coarsest:
            widths.append(widths[-1] // 2)
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

    # -- blocks -----------------------------------------------------------------------
    def stem(self, x: str, cin: int, c: int) -> tuple[str, Block]:
        self.level = "stem"
        k = self.spec.stem.kernel
        conv = self.conv_slot("stem.conv", cin, c, "stem", ("stem",), kernel=k)
        bn = self.bn_slot("stem.bn", c, ("stem",))
        y = self.relu(self.bn(self.conv(x, conv), bn), c, "stem")
        return y, Block("stem", "stem", (("cin", cin), ("cout", c), ("kernel", k)))

    def head(self, u: str, c: int) -> tuple[str, Block]:
        self.level = "head"
        bias = self.spec.head.bias
        fc = self.slot("head.fc", "linear", c, self.spec.classes, "fc", ("head",), bias=bias)
        pooled = self.emit("avgpool", (u,), c, c, "head", "avgpool")
        logits = self.emit("linear", (pooled,), c, self.spec.classes, "head", "fc", fc, ("head",))
        out = self.emit("output", (logits,), self.spec.classes, self.spec.classes, "", "output")
        return out, Block("head", "head", (("cin", c), ("classes", self.spec.classes), ("bias", bias)))

    def smoothing_step(self, f: str, u: str, A: str, B: str, bn1: str, bn2: str, c: int, scope: str) -> str:
        """u <- u + relu(bn2(B(relu(bn1(f - A(u))))))."""
        r = f if u == _ZERO else self.sub(f, self.conv(u, A), c, scope, "f - A(u)")
        d = self.relu(self.bn(self.conv(self.relu(self.bn(r, bn1), c, scope), B), bn2), c, scope)
        return d if u == _ZERO else self.add(u, d, c, scope, "u + du")

    def declare_channel_level(self, path: str, widths: list[int], k: int, grid: ChannelGrid, origin: tuple) -> Block:
        w = widths[k]
        coarsest = k == len(widths) - 1
        groups = 1 if coarsest else w // grid.group_size
        self.conv_slot(f"{path}.A", w, w, "A", origin, groups=groups)
        self.conv_slot(f"{path}.B", w, w, "B", origin, groups=groups)
        for i in range(grid.pre_smoothing):
            self.bn_slot(f"{path}.pre.{i}.bn1", w, origin)
            self.bn_slot(f"{path}.pre.{i}.bn2", w, origin)
        children: tuple[Block, ...] = ()
        if coarsest:
            self.bn_slot(f"{path}.solve.bn1", w, origin)
            self.bn_slot(f"{path}.solve.bn2", w, origin)
        else:
            h = w // 2
            self.conv_slot(f"{path}.R", w, h, "R_c", origin, kernel=1, groups=h)
            self.bn_slot(f"{path}.bn_R", h, origin)
            self.conv_slot(f"{path}.Pi", w, h, "Pi_c", origin, kernel=1, groups=h)
            self.bn_slot(f"{path}.bn_Pi", h, origin)
            self.conv_slot(f"{path}.P", h, w, "P_c", origin, kernel=1, groups=h)
            self.bn_slot(f"{path}.bn_P", w, origin)
            children = (self.declare_channel_level(f"{path}.coarse", widths, k + 1, grid, origin),)
        for i in range(grid.post_smoothing):
            self.bn_slot(f"{path}.post.{i}.bn1", w, origin)
            self.bn_slot(f"{path}.post.{i}.bn2", w, origin)
        attrs = (
            ("width", w),
            ("groups", groups),
            ("group_size", grid.group_size),
            ("pre", grid.pre_smoothing),
            ("post", grid.post_smoothing),
        )
        return Block("channel_level", path, attrs, children)

    def channel_cycle(self, f: str, u: str, block: Block) -> str:
        """One SiC V-cycle on the channel level ``block`` (recursing to the coarser ones)."""
        p, w = block.path, block.attr("width")
        A, B = f"{p}.A", f"{p}.B"
        for i in range(block.attr("pre")):
            u = self.smoothing_step(f, u, A, B, f"{p}.pre.{i}.bn1", f"{p}.pre.{i}.bn2", w, f"{p}.pre.{i}")
        if block.children:
            coarse = block.children[0]
            h = w // 2
            assert u != _ZERO, "pre_smoothing >= 1 makes u non-zero here"
            u_c = self.bn(self.conv(u, f"{p}.Pi"), f"{p}.bn_Pi")
            r = self.sub(f, self.conv(u, A), w, p, "f - A(u)")
            f_c = self.add(
                self.bn(self.conv(r, f"{p}.R"), f"{p}.bn_R"), self.conv(u_c, f"{coarse.path}.A"), h, p, "f_c"
            )
            e = self.channel_cycle(f_c, u_c, coarse)
            u = self.add(u, self.bn(self.conv(e, f"{p}.P"), f"{p}.bn_P"), w, p, "u + P(e)")
        else:
            u = self.smoothing_step(f, u, A, B, f"{p}.solve.bn1", f"{p}.solve.bn2", w, f"{p}.solve")
        for i in range(block.attr("post")):
            u = self.smoothing_step(f, u, A, B, f"{p}.post.{i}.bn1", f"{p}.post.{i}.bn2", w, f"{p}.post.{i}")
        return u

    # -- families ---------------------------------------------------------------------
    def mgnet(self, x: str, grid: MgNetGrid) -> tuple[str, list[Block]]:
        spec = self.spec
        widths = self.level_widths(grid)
        f, stem = self.stem(x, spec.input.channels, widths[0])
        blocks = [stem]
        u = _ZERO
        prev_A = None
        for i, level in enumerate(grid.levels):
            name = spec.level_name(i)
            self.level = name
            path = f"levels.{name}"
            origin = ("resolution_grid", "levels", i)
            c = widths[i]
            cin = widths[i - 1] if i else c
            transfers = i > 0 or grid.level1_transfers
            if transfers:
                if c % cin:
                    raise self.error(
                        f"level {name} has {c} channels, not a multiple of the {cin} channels of the level before: "
                        "the depthwise-style transfers R and Pi (groups = input channels) cannot map them",
                        origin + ("channels",),
                    )
                self.conv_slot(f"{path}.R", cin, c, "R", origin, stride=2, groups=cin)
                self.conv_slot(f"{path}.Pi", cin, c, "Pi", origin, stride=2, groups=cin)
            cgrid = spec.level_channel_grid(i)
            if cgrid is not None:
                if level.steps != 1:
                    raise self.error(
                        "a level with a channel grid runs exactly one V-cycle",
                        origin + ("steps",),
                        hint="set steps: 1 and use channel_grid.pre_smoothing / post_smoothing",
                    )
                if set(grid.share) != {"A", "B"} or grid.group_size is not None:
                    raise self.error(
                        "with a channel grid, A_k and B_k are shared over the V-cycle and grouped by "
                        "channel_grid.group_size",
                        ("resolution_grid",),
                        hint="remove resolution_grid.share and resolution_grid.group_size",
                    )
                cwidths = self.channel_widths(c, cgrid, self.grid_origin(i), name)
                tree = self.declare_channel_level(f"{path}.cycle", cwidths, 0, cgrid, self.grid_origin(i))
                first_A = last_A = f"{path}.cycle.A"
                kind, children = "mgiad_level", (tree,)
            else:
                groups = 1
                if grid.group_size is not None:
                    if c % grid.group_size:
                        raise self.error(
                            f"group size {grid.group_size} does not divide the {c} channels of level {name}",
                            ("resolution_grid", "group_size"),
                        )
                    groups = c // grid.group_size
                shared = {op: f"{path}.{op}" for op in ("A", "B") if op in grid.share}
                for op, slot in shared.items():
                    self.conv_slot(slot, c, c, op, origin, groups=groups)
                for s in range(level.steps):
                    for op in ("A", "B"):
                        if op not in shared:
                            self.conv_slot(f"{path}.steps.{s}.{op}", c, c, op, origin, groups=groups)
                    self.bn_slot(f"{path}.steps.{s}.bn1", c, origin)
                    self.bn_slot(f"{path}.steps.{s}.bn2", c, origin)
                first_A = shared.get("A", f"{path}.steps.0.A")
                last_A = shared.get("A", f"{path}.steps.{level.steps - 1}.A")
                kind, children = "mgnet_level", ()
            if i > 0:
                # FAS: u' = Pi(u), f' = R(relu(f - A(u))) + A'(u')
                u_next = self.conv(u, f"{path}.Pi")
                r = self.relu(self.sub(f, self.conv(u, prev_A), cin, path, "f - A(u)"), cin, path)
                f = self.add(self.conv(r, f"{path}.R"), self.conv(u_next, first_A), c, path, "f")
                u = u_next
            if kind == "mgiad_level":
                u = self.channel_cycle(f, u, children[0])
            else:
                for s in range(level.steps):
                    A = shared.get("A", f"{path}.steps.{s}.A")
                    B = shared.get("B", f"{path}.steps.{s}.B")
                    u = self.smoothing_step(
                        f, u, A, B, f"{path}.steps.{s}.bn1", f"{path}.steps.{s}.bn2", c, f"{path}.steps.{s}"
                    )
            attrs = (
                ("name", name),
                ("cin", cin),
                ("channels", c),
                ("steps", level.steps),
                ("transfers", transfers),
                ("share_A", "A" in grid.share),
                ("share_B", "B" in grid.share),
                ("groups", 1 if kind == "mgiad_level" else groups),
            )
            blocks.append(Block(kind, path, attrs, children))
            prev_A = last_A
        out, head = self.head(u, widths[-1])
        return out, blocks + [head]

    def resnet(self, x: str, grid: ResNetGrid) -> tuple[str, list[Block]]:
        spec = self.spec
        widths = self.level_widths(grid)
        h, stem = self.stem(x, spec.input.channels, widths[0])
        blocks = [stem]
        cin = widths[0]
        for i, level in enumerate(grid.levels):
            name = spec.level_name(i)
            self.level = name
            path = f"levels.{name}"
            origin = ("resolution_grid", "levels", i)
            c = widths[i]
            cgrid = spec.level_channel_grid(i)
            cwidths = self.channel_widths(c, cgrid, self.grid_origin(i), name) if cgrid else None
            children = []
            for b in range(level.steps):
                bpath = f"{path}.blocks.{b}"
                stride = 2 if (b == 0 and i > 0) else 1
                if cwidths and stride == 1 and cin == c:
                    tree = self.declare_channel_level(f"{bpath}.cycle", cwidths, 0, cgrid, self.grid_origin(i))
                    # MGIC block: x <- relu(x + V(f=x, u=0))
                    v = self.channel_cycle(h, _ZERO, tree)
                    h = self.relu(self.add(h, v, c, bpath, "x + V(x)"), c, bpath)
                    children.append(Block("cycle_block", bpath, (("channels", c),), (tree,)))
                else:
                    h = self.basic_block(h, cin, c, stride, grid.shortcut, bpath, origin)
                    children.append(
                        Block(
                            "basic_block",
                            bpath,
                            (
                                ("cin", cin),
                                ("cout", c),
                                ("stride", stride),
                                ("shortcut", self.shortcut_kind(cin, c, stride, grid.shortcut)),
                            ),
                        )
                    )
                cin = c
            blocks.append(Block("resnet_level", path, (("name", name), ("channels", c)), tuple(children)))
        out, head = self.head(h, widths[-1])
        return out, blocks + [head]

    @staticmethod
    def shortcut_kind(cin: int, cout: int, stride: int, option: str) -> str:
        if cin == cout and stride == 1:
            return "identity"
        return option

    def basic_block(self, x: str, cin: int, c: int, stride: int, option: str, path: str, origin: tuple) -> str:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        conv1 = self.conv_slot(f"{path}.conv1", cin, c, "conv", origin, stride=stride)
        bn1 = self.bn_slot(f"{path}.bn1", c, origin)
        conv2 = self.conv_slot(f"{path}.conv2", c, c, "conv", origin)
        bn2 = self.bn_slot(f"{path}.bn2", c, origin)
        kind = self.shortcut_kind(cin, c, stride, option)
        if kind == "projection":
            proj = self.conv_slot(f"{path}.proj", cin, c, "proj", origin, kernel=1, stride=stride)
            proj_bn = self.bn_slot(f"{path}.proj_bn", c, origin)
        y = self.bn(self.conv(self.relu(self.bn(self.conv(x, conv1), bn1), c, path), conv2), bn2)
        if kind == "identity":
            s = x
        elif kind == "projection":
            s = self.bn(self.conv(x, proj), proj_bn)
        else:
            if c < cin or stride != 2:
                raise self.error(
                    f"option-A shortcuts need stride 2 and at least as many output as input channels ({cin} -> {c})",
                    origin + ("channels",),
                    hint="use shortcut: projection",
                )
            s = self.emit("shortcut_a", (x,), cin, c, path, "shortcut")
        return self.relu(self.add(y, s, c, path, "y + shortcut(x)"), c, path)

    def run(self) -> nx.DiGraph:
        grid = self.spec.resolution_grid
        x = self.emit("input", (), self.spec.input.channels, self.spec.input.channels, "", "input")
        if isinstance(grid, MgNetGrid):
            _, blocks = self.mgnet(x, grid)
        else:
            _, blocks = self.resnet(x, grid)
        self.graph.graph.update(
            slots=self.slots,
            blocks=Block("model", "", (("name", self.spec.name),), tuple(blocks)),
            spec=self.spec,
        )
        return self.graph


def lower(spec: Spec, source: Source | None = None) -> nx.DiGraph:
    """Lower a spec to the graph IR (unverified; see :func:`mgspec.verify.verify`)."""
    graph = _Lowering(spec, source).run()
    graph.graph["source"] = source.name if source else "<spec>"
    graph.graph["sha256"] = source.sha256 if source else ""
    return graph
