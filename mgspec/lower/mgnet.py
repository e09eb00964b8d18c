"""The resolution levels of MgNet and MGiaD, entered by FAS: ``u' = Pi(u)``,
``f' = R(act(f - A(u))) + A'(u')`` between levels, then the level's smoothing -- MgNet
smoothing steps sharing A and B (:class:`MgNetSmoothing`) or, with a channel grid, channel
cycles (:class:`MGiaDCycles`). u starts as an explicit zero on level 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mgspec.ir import Slot
from mgspec.lower.builder import Builder
from mgspec.lower.channel import ChannelCycle, ChannelLevel
from mgspec.lower.ends import head, stem
from mgspec.lower.smoothing import SmoothingStep
from mgspec.lower.widths import channel_widths, grid_origin, level_widths
from mgspec.schema import MgNetGrid


@dataclass(frozen=True)
class Shareable:
    """What a level offers the next one for ``share_across``: its width, what must agree for
    sharing (``key``) and the operators' source."""

    width: int
    key: Any
    source: Any


@dataclass(frozen=True)
class Body:
    """A declared level body: its units (steps or cycles), the A its first and last units apply
    (FAS applies them), and what the next level may share."""

    units: tuple
    first_A: Slot
    last_A: Slot
    offer: Shareable


class MgNetSmoothing:
    """The body of an MgNet level: smoothing steps, A and B shared by every step (``share``)."""

    family = "mgnet"

    def __init__(self, b: Builder, steps: SmoothingStep) -> None:
        self.b, self.steps = b, steps

    def check(self, i: int, c: int, name: str) -> int:
        """The A, B groups of level ``i`` (``c`` channels): ``c // group_size``, or 1."""
        grid = self.b.spec.resolution_grid
        if grid.group_size is None:
            return 1
        if c % grid.group_size:
            raise self.b.error(
                f"group size {grid.group_size} does not divide the {c} channels of level {name}",
                ("resolution_grid", "group_size"),
            )
        return c // grid.group_size

    def describe(self, steps: int) -> str:
        return "MgNet smoothing steps"

    def declare(self, i, path, c, origin, groups, across: Shareable | None) -> Body:
        b, grid = self.b, self.b.spec.resolution_grid
        shared: dict[str, Slot] = {}
        for op in (op for op in ("A", "B") if op in grid.share):
            if across is not None and op in grid.share_across and across.key == groups:
                shared[op] = across.source[op]
            else:
                doc = f"{op}, shared by every step"
                shared[op] = b.conv_slot(op, c, c, op, origin, kernel=b.spec.layers.kernel, groups=groups, doc=doc)
        n = grid.levels[i].steps
        steps = tuple(self.steps.declare(f"{path}.steps.{s}", c, origin, shared, groups) for s in range(n))
        return Body(steps, steps[0].A, steps[-1].A, Shareable(c, groups, shared))

    def run(self, body: Body, f: str, u: str) -> str:
        for step in body.units:
            u = self.steps.run(step, f, u)
        return u


class MGiaDCycles:
    """The body of an MGiaD level: channel cycles sharing the first cycle's level-shared A_k, B_k."""

    family = "mgiad"

    def __init__(self, b: Builder, cycle: ChannelCycle) -> None:
        self.b, self.cycle = b, cycle

    def check(self, i: int, c: int, name: str) -> int:
        """Refuses what a channel grid rules out; the coarsest channel level's group size must divide it."""
        b, grid = self.b, self.b.spec.resolution_grid
        if "share" in grid.model_fields_set:
            raise b.error(
                "with a channel grid, what the smoothing steps share is channel_grid.share",
                ("resolution_grid", "share"),
                hint="remove resolution_grid.share; set channel_grid.share",
            )
        cwidths = channel_widths(b, c, b.spec.level_channel_grid(i), grid_origin(b.spec, i), name)
        if grid.group_size is not None and cwidths[-1] % grid.group_size:
            raise b.error(
                f"group size {grid.group_size} does not divide the {cwidths[-1]} channels of level {name}'s "
                "coarsest channel level",
                ("resolution_grid", "group_size"),
            )
        return 1

    def describe(self, steps: int) -> str:
        return "one channel cycle (SiC)" if steps == 1 else f"{steps} channel cycles sharing A_k, B_k"

    def declare(self, i, path, c, origin, groups, across: Shareable | None) -> Body:
        b, grid, cgrid = self.b, self.b.spec.resolution_grid, self.b.spec.level_channel_grid(i)
        hierarchy = (tuple(cgrid.widths(c)), cgrid)
        alias: dict[str, ChannelLevel] = {}
        if across is not None and across.key == hierarchy and grid.share_across:
            alias = {op: across.source for op in grid.share_across if op in cgrid.share}
        cycles: list[ChannelLevel] = []
        n = grid.levels[i].steps
        for j in range(n):
            where = f"{path}.cycle" if n == 1 else f"{path}.cycles.{j}"
            if j > 0:  # later cycles share the first's level-shared operators
                alias = dict.fromkeys(cgrid.share, cycles[0])
            cycles.append(
                self.cycle.declare(where, list(hierarchy[0]), 0, cgrid, grid_origin(b.spec, i), grid.group_size, alias)
            )
        return Body(tuple(cycles), cycles[0].first_A, cycles[-1].last_A, Shareable(c, hierarchy, cycles[0]))

    def run(self, body: Body, f: str, u: str) -> str:
        for cycle in body.units:
            u = self.cycle.run(cycle, f, u, ("u",))
        return u


class ResolutionLevels:
    """The MgNet and MGiaD families: stem, the resolution levels with FAS between them, head."""

    def __init__(self, b: Builder) -> None:
        steps = SmoothingStep(b)
        self.b = b
        self.smoothing = MgNetSmoothing(b, steps)
        self.cycles = MGiaDCycles(b, ChannelCycle(b, steps))

    def lower(self, x: str, grid: MgNetGrid) -> str:
        """The logits of input ``x``."""
        b, spec = self.b, self.b.spec
        widths = level_widths(b, grid)
        f = stem(b, x, spec.input.channels, widths[0], "f")
        b.level = spec.level_name(0)
        u = b.zero(f, widths[0])
        fine_A: Slot | None = None
        previous: Shareable | None = None
        for i in range(len(grid.levels)):
            b.level = spec.level_name(i)
            c, cin = widths[i], widths[i - 1] if i else widths[i]
            block, transfers, body, kind = self.declare(i, cin, c, previous)
            with b.run(block, ("u",) if i == 0 else ("f", "u"), f=f, u=u):
                if i > 0:
                    f, u = self.fas(f, u, fine_A, transfers, cin, c, body.first_A)
                u = kind.run(body, f, u)
                block.outputs = (("u", u),) if i == 0 else (("f", f), ("u", u))
            fine_A, previous = body.last_A, body.offer
        return head(b, u, widths[-1])

    def declare(self, i: int, cin: int, c: int, previous: Shareable | None):
        """Level ``i``'s block, its transfers (R, Pi or None), its body and the body's kind."""
        b, spec, grid = self.b, self.b.spec, self.b.spec.resolution_grid
        name, path, origin = spec.level_name(i), f"levels.{spec.level_name(i)}", ("resolution_grid", "levels", i)
        if grid.restriction == "avgpool" and i > 0 and c % cin:
            raise b.error(
                f"level {name} has {c} channels, not a multiple of the {cin} channels of the level before: "
                "average-pool restriction repeats channels and cannot map them",
                origin + ("channels",),
                hint="use restriction: depthwise or dense",
            )
        kind = self.cycles if spec.level_channel_grid(i) is not None else self.smoothing
        groups = kind.check(i, c, name)
        params = (("cin", cin), ("channels", c)) + ((("groups", groups),) if groups > 1 else ())
        across = previous if previous is not None and previous.width == c else None
        transfers = None
        with b.declare(f"{kind.family}_{'first_level' if i == 0 else 'level'}", path, params, self.doc(i, kind)) as blk:
            if (i > 0 or grid.level1_transfers) and grid.restriction != "avgpool":
                kw = {"stride": 2, "groups": 1 if grid.restriction == "dense" else math.gcd(cin, c)}
                R = b.conv_slot("R", cin, c, "R", origin, doc="R: restricts the residual", **kw)
                Pi = b.conv_slot("Pi", cin, c, "Pi", origin, doc="Π: restricts u", **kw)
                transfers = (R, Pi)
            body = kind.declare(i, path, c, origin, groups, across)
        return blk, transfers, body, kind

    def doc(self, i: int, kind) -> str:
        smoothing = kind.describe(self.b.spec.resolution_grid.levels[i].steps)
        if i == 0:
            return f"The finest resolution level: {smoothing} from u = 0."
        fas = f"u' = Π(u), f' = R({self.b.act_text('f - A(u)')}) + A'(u')"
        return f"A resolution level entered by FAS ({fas}), then {smoothing}."

    def fas(self, f: str, u: str, fine_A: Slot, transfers, cin: int, c: int, first_A: Slot) -> tuple[str, str]:
        """The full approximation scheme from the finer level: the coarse level's f and u."""
        b = self.b
        note = f"r = {b.act_text('f - A(u)')} on the finer level"
        r = b.act(b.sub(f, b.conv(u, fine_A, "A_fine"), cin, "f - A(u)"), cin, name="r", note=note)
        R, Pi = transfers or (None, None)
        u = self.restrict(u, Pi, cin, c, "Pi", name="u", note="u' = Π(u)")
        restricted = self.restrict(r, R, cin, c, "R")
        f = b.add(restricted, b.conv(u, first_A), c, "f", name="f", note="f' = R(r) + A'(u')")
        return f, u

    def restrict(self, x: str, slot: Slot | None, cin: int, c: int, label: str, name: str = "", note: str = "") -> str:
        """R or Π between resolution levels: a learned strided conv, or average pooling (no weights)."""
        if slot is None:
            return self.b.emit("avgpool2", (x,), cin, c, label, name=name, note=note)
        return self.b.conv(x, slot, name=name, note=note)
