"""Channel arithmetic with located errors: the levels' widths after the width multiplier and
the channel levels' widths of a channel grid."""

from __future__ import annotations

from mgspec.lower.builder import Builder
from mgspec.schema import ChannelGrid, MgNetGrid, ResNetGrid


def scaled(b: Builder, channels: int, origin: tuple) -> int:
    """``channels`` times the spec's width multiplier, which must give whole channels."""
    c = channels * b.spec.width
    if abs(c - round(c)) > 1e-9:
        raise b.error(
            f"width {b.spec.width:g} x {channels} channels = {c:g} is not a whole number of channels",
            ("width",),
        )
    return int(round(c))


def level_widths(b: Builder, grid: MgNetGrid | ResNetGrid) -> list[int]:
    """Every resolution level's channels after the width multiplier."""
    return [scaled(b, lv.channels, ("resolution_grid", "levels", i, "channels")) for i, lv in enumerate(grid.levels)]


def channel_widths(b: Builder, c: int, grid: ChannelGrid, origin: tuple, level: str) -> list[int]:
    """The channel levels' widths of level ``level`` (``c`` channels); the groups must divide them."""
    if grid.coarsest > c:
        raise b.error(
            f"coarsest width {grid.coarsest} is wider than level {level} ({c} channels)",
            origin + ("coarsest",),
            hint=f"use a coarsest width <= {c}",
        )
    widths = grid.widths(c)
    for w in widths[:-1]:
        if w % grid.group_size:
            raise b.error(
                f"group size {grid.group_size} does not divide channel level width {w} of level {level} "
                f"(widths {', '.join(map(str, widths))})",
                origin + ("group_size",),
                hint="choose a group size that divides every grouped channel level width",
            )
    return widths


def grid_origin(spec, index: int) -> tuple:
    """Where level ``index``'s channel grid is written: its own override, or the spec's."""
    level = spec.resolution_grid.levels[index]
    if "channel_grid" in level.model_fields_set:
        return ("resolution_grid", "levels", index, "channel_grid")
    return ("channel_grid",)
