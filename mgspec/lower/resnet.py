"""The ResNet and MGIC families: stages of blocks at one resolution each.

A block is a ResNet basic block, ``act(norm2(conv2(act(norm1(conv1(x))))) + s)`` with shortcut
``s``, or -- in MGIC, where the block keeps its width and resolution -- a cycle block,
``x <- act(x + V(f = x, u = 0))``, one channel cycle from an explicit zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from mgspec.ir import Slot
from mgspec.lower.builder import Builder, Draft
from mgspec.lower.channel import ChannelCycle, ChannelLevel
from mgspec.lower.ends import head, stem
from mgspec.lower.smoothing import SmoothingStep
from mgspec.lower.widths import channel_widths, grid_origin, level_widths
from mgspec.schema import ResNetGrid


@dataclass(frozen=True)
class BasicBlock:
    """A declared basic block: its convs and norms, and the shortcut's kind and (projection) slots."""

    block: Draft
    conv1: Slot
    norm1: Slot | None
    conv2: Slot
    norm2: Slot | None
    shortcut: str  # identity, projection or option_a
    proj: Slot | None = None
    proj_norm: Slot | None = None


@dataclass(frozen=True)
class CycleBlock:
    """A declared MGIC cycle block: its block and its channel cycle."""

    block: Draft
    cycle: ChannelLevel


class ResNetStage:
    """Declares and runs stages (``resnet_level``) of basic blocks and MGIC cycle blocks."""

    def __init__(self, b: Builder) -> None:
        self.b = b
        self.cycle = ChannelCycle(b, SmoothingStep(b))

    def lower(self, x: str, grid: ResNetGrid) -> str:
        """The logits of input ``x``."""
        b, spec = self.b, self.b.spec
        widths = level_widths(b, grid)
        h = stem(b, x, spec.input.channels, widths[0], "x")
        cin = widths[0]
        for i in range(len(grid.levels)):
            b.level = spec.level_name(i)
            stage, blocks = self.declare(i, cin, widths[i])
            with b.run(stage, ("x",), x=h):
                for block in blocks:
                    h = self.run(block, h)
                stage.outputs = (("x", h),)
            cin = widths[i]
        return head(b, h, widths[-1])

    def declare(self, i: int, cin: int, c: int) -> tuple[Draft, list[BasicBlock | CycleBlock]]:
        """Stage ``i`` (``cin`` -> ``c`` channels) and its blocks."""
        b, spec = self.b, self.b.spec
        name, grid = spec.level_name(i), spec.resolution_grid
        path, origin = f"levels.{name}", ("resolution_grid", "levels", i)
        cgrid = spec.level_channel_grid(i)
        cwidths = channel_widths(b, c, cgrid, grid_origin(spec, i), name) if cgrid else None
        blocks: list[BasicBlock | CycleBlock] = []
        with b.declare("resnet_level", path, (("channels", c),), "A stage of blocks at one resolution.") as stage:
            for n in range(grid.levels[i].steps):
                where = f"{path}.blocks.{n}"
                stride = 2 if (n == 0 and i > 0) else 1
                if cwidths and stride == 1 and cin == c:
                    shape = cgrid.cycle  # the docstring names the cycle the block runs (V, W, ...)
                    doc = f"MGIC block: x <- {b.act_text(f'x + {shape}(f = x, u = 0)')}, one channel {shape}-cycle."
                    with b.declare("cycle_block", where, (("channels", c),), doc) as block:
                        cycle = self.cycle.declare(f"{where}.cycle", cwidths, 0, cgrid, grid_origin(spec, i))
                    blocks.append(CycleBlock(block, cycle))
                else:
                    blocks.append(self.declare_basic(where, cin, c, stride, grid.shortcut, origin))
                cin = c
        return stage, blocks

    def declare_basic(self, path: str, cin: int, c: int, stride: int, option: str, origin: tuple) -> BasicBlock:
        b = self.b
        shortcut = "identity" if cin == c and stride == 1 else option
        if shortcut == "option_a" and (c < cin or stride != 2):
            raise b.error(
                f"option-A shortcuts need stride 2 and at least as many output as input channels ({cin} -> {c})",
                origin + ("channels",),
                hint="use shortcut: projection",
            )
        kind = "basic_block" if shortcut == "identity" else f"basic_block_{shortcut}"
        described = {
            "identity": "x",
            "projection": f"{b.norm_text('proj(x)')}, a strided 1x1 projection",
            "option_a": "x subsampled by 2 and zero-padded to the new channels (option A)",
        }[shortcut]
        params = (("cin", cin), ("cout", c), ("stride", stride))
        body = b.norm_text(f"conv2({b.act_text(b.norm_text('conv1(x)', '1'))})", "2")
        doc = f"ResNet basic block: {b.act_text(body + ' + s')} with shortcut s = {described}."
        with b.declare(kind, path, params, doc) as block:
            k = b.spec.layers.kernel
            conv1 = b.conv_slot("conv1", cin, c, "conv", origin, kernel=k, stride=stride)
            norm1 = b.norm_slot("{n}1", c, origin)
            conv2 = b.conv_slot("conv2", c, c, "conv", origin, kernel=k)
            norm2 = b.norm_slot("{n}2", c, origin)
            proj = proj_norm = None
            if shortcut == "projection":
                proj = b.conv_slot("proj", cin, c, "proj", origin, kernel=1, stride=stride)
                proj_norm = b.norm_slot("proj_{n}", c, origin)
        return BasicBlock(block, conv1, norm1, conv2, norm2, shortcut, proj, proj_norm)

    def run(self, unit: BasicBlock | CycleBlock, x: str) -> str:
        """Run one block of a stage on ``x``."""
        b, c = self.b, unit.block.param("channels" if isinstance(unit, CycleBlock) else "cout")
        with b.run(unit.block, ("x",), x=x):
            if isinstance(unit, CycleBlock):
                v = self.cycle.run(unit.cycle, x, b.zero(x, c), ("v",))
                h = b.act(b.add(x, v, c, "x + V(x)"), c)
            else:
                h = self.basic(unit, x, c)
            unit.block.outputs = (("x", h),)
        return h

    def basic(self, unit: BasicBlock, x: str, c: int) -> str:
        """act(norm2(conv2(act(norm1(conv1(x))))) + shortcut(x))."""
        b = self.b
        h = b.act(b.norm(b.conv(x, unit.conv1), unit.norm1), c)
        y = b.norm(b.conv(h, unit.conv2), unit.norm2, name="y")
        if unit.shortcut == "identity":
            s = x
        elif unit.shortcut == "projection":
            s = b.norm(b.conv(x, unit.proj), unit.proj_norm)
        else:
            s = b.emit("shortcut_a", (x,), unit.block.param("cin"), c, "shortcut")
        return b.act(b.add(y, s, c, "y + shortcut(x)"), c)
