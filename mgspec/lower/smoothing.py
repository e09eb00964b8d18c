"""The MgNet smoothing step, the unit of every MgNet level and every channel level:
``u <- u + act(norm2(B(act(norm1(f - A(u))))))``."""

from __future__ import annotations

from dataclasses import dataclass

from mgspec.ir import Slot
from mgspec.lower.builder import Builder, Draft


@dataclass(frozen=True)
class Step:
    """A declared smoothing step: its block and the slots it applies (A and B are its own or
    the ones its level shares; ``norm1`` follows ``f - A(u)``, ``norm2`` follows B)."""

    block: Draft
    A: Slot
    B: Slot
    norm1: Slot | None
    norm2: Slot | None


class SmoothingStep:
    """Declares and runs smoothing steps (block kind ``smoothing_step``)."""

    def __init__(self, b: Builder) -> None:
        self.b = b

    def doc(self, norms: int) -> str:
        """The step's equation with the spec's layers and ``norms`` normalisations."""

        def normed(i: int, x: str) -> str:
            if norms == 1 and i == 1:
                return x
            return self.b.norm_text(x, str(i) if norms == 2 else "")

        inner = self.b.act_text(normed(1, "f - A(u)"))
        return f"One MgNet smoothing step: u <- u + {self.b.act_text(normed(2, f'B({inner})'))}."

    def declare(
        self,
        path: str,
        c: int,
        origin: tuple,
        shared: dict[str, Slot],
        groups: int = 1,
        norms: int | None = None,
    ) -> Step:
        """A step at ``path`` owning the operators its level does not share (``shared``: op -> slot)."""
        b = self.b
        own = tuple(op for op in ("A", "B") if op not in shared)
        params = (("channels", c),) + ((("groups", groups),) if own and groups > 1 else ())
        norms = norms or b.spec.layers.norms_per_step
        with b.declare("smoothing_step", path, params, self.doc(norms)) as block:
            ops = dict(shared)
            for op in own:
                ops[op] = b.conv_slot(op, c, c, op, origin, kernel=b.spec.layers.kernel, groups=groups)
            if norms == 2:
                first, second = b.norm_slot("{n}1", c, origin), b.norm_slot("{n}2", c, origin)
            else:  # one normalisation per step, after B
                first, second = None, b.norm_slot("{n}", c, origin)
        return Step(block, ops["A"], ops["B"], first, second)

    def run(self, step: Step, f: str, u: str) -> str:
        """u <- u + act(norm2(B(act(norm1(f - A(u))))))."""
        b, c = self.b, step.block.param("channels")
        with b.run(step.block, ("u",), f=f, u=u):
            r = b.sub(f, b.conv(u, step.A), c, "f - A(u)", name="r")
            d = b.act(b.norm(b.conv(b.act(b.norm(r, step.norm1), c), step.B), step.norm2), c, name="du")
            u = b.add(u, d, c, "u + du", name="u")
            step.block.outputs = (("u", u),)
        return u
