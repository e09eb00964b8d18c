"""The cycle shapes of a channel grid, as data: one entry per ``channel_grid.cycle`` choice.

A cycle on channel level k smooths, corrects through the next coarser level k+1 and smooths
again. Its shape says how the correction visits level k+1: :attr:`Cycle.visits` lists the shape
of each visit in order. The first visit starts from the restricted ``u``; each later one starts
from the previous visit's result and applies the first visit's level-shared A, B (its norms and
transfers are its own). On the coarsest level every shape is the same: pre-smoothing, one more
smoothing step (the coarse solve), post-smoothing.

The lowering (:mod:`mgspec.lower.channel`) declares and runs the visits this table lists, and
the schema's size limit counts them (:func:`smoothing_steps`), so a new shape (an F-cycle:
``Cycle(("F", "V"), ...)``) is one entry here. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cycle:
    """One cycle shape: the shapes of its visits to the next coarser channel level, in order, and
    ``text``, how docstrings say how often it visits that level."""

    visits: tuple[str, ...]
    text: str


#: ``channel_grid.cycle`` -> the cycle shape.
CYCLES: dict[str, Cycle] = {
    "V": Cycle(("V",), "once"),
    "W": Cycle(("W", "W"), "twice, the second visit starting from the first's result"),
}

for _name, _cycle in CYCLES.items():  # a shape's visits name shapes of this table
    if not _cycle.visits or not set(_cycle.visits) <= set(CYCLES):
        raise ValueError(f"cycle {_name!r} visits {_cycle.visits}: each visit must name a cycle of CYCLES")


def smoothing_steps(grid, widths: list[int]) -> int:
    """Smoothing steps of one ``grid.cycle`` cycle over the channel levels of ``widths``.

    With p pre- and q post-smoothing steps, a level with no coarser level takes p + q + 1 (its
    coarse solve is one more step), and every finer level p + q plus the steps of its visits,
    level by level from the coarsest: a V-cycle over d coarser levels takes (p + q)(d + 1) + 1,
    a W-cycle (p + q)(2^(d+1) - 1) + 2^d.
    """
    per_level = grid.pre_smoothing + grid.post_smoothing
    steps = dict.fromkeys(CYCLES, per_level + 1)  # shape -> its steps from the current level down
    for _ in widths[:-1]:
        steps = {name: per_level + sum(steps[v] for v in cycle.visits) for name, cycle in CYCLES.items()}
    return steps[grid.cycle]
