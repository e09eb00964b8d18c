"""The SiC channel cycle of MGiaD and MGIC: channel level k and the coarser ones below it.

On channel level k: pre-smoothing; then either ``u_c = norm(Pi_k(u))``,
``f_c = norm(R_k(f - A_k(u))) + A_{k+1}(u_c)``, the visits to level k+1 that the cycle's shape
lists (:data:`mgspec.cycles.CYCLES`; the first from ``u_c``, each later one from the previous
result) giving ``e``, and ``u <- u + norm(P_k(e))``, or, on the coarsest level, one more smoothing
step; then post-smoothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from mgspec.cycles import CYCLES
from mgspec.ir import Slot
from mgspec.lower.builder import Builder, Draft
from mgspec.lower.smoothing import SmoothingStep, Step
from mgspec.schema import ChannelGrid


@dataclass(frozen=True)
class Transfers:
    """The transfers between channel level k and k+1, each with its normalisation (or None)."""

    R: Slot
    norm_R: Slot | None
    Pi: Slot
    norm_Pi: Slot | None
    P: Slot
    norm_P: Slot | None


@dataclass(frozen=True)
class ChannelLevel:
    """A declared channel level: its block, the level-shared operators (op -> slot, its own or
    another level's), its steps, and -- above the coarsest -- its transfers and coarse visits."""

    block: Draft
    shared: dict[str, Slot]
    pre: tuple[Step, ...]
    solve: Step | None
    post: tuple[Step, ...]
    transfers: Transfers | None
    visits: tuple[ChannelLevel, ...]

    @property
    def first_A(self) -> Slot:
        """The A its first smoothing step applies."""
        return self.steps[0].A

    @property
    def last_A(self) -> Slot:
        """The A its last smoothing step applies."""
        return self.steps[-1].A

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.pre + ((self.solve,) if self.solve else ()) + self.post


class ChannelCycle:
    """Declares and runs channel levels (block kinds ``channel_level``, ``coarsest_channel_level``)."""

    def __init__(self, b: Builder, steps: SmoothingStep) -> None:
        self.b = b
        self.steps = steps

    def doc(self, grid: ChannelGrid, shape: str, w: int, coarsest: bool, groups: int, coarsest_gs: int | None):
        """The block kind, constructor numbers and docstring of a channel level."""
        if coarsest:
            params = (("channels", w),) + ((("groups", groups),) if groups > 1 else ())
            coupled = f"grouped A and B (group size {coarsest_gs})" if groups > 1 else "fully coupled A and B"
            doc = f"The coarsest channel level: {coupled}; the coarse solve is one more smoothing step."
            return "coarsest_channel_level", params, doc
        doc = (
            f"Channel level k of the SiC {shape}-cycle: pre-smoothing, the coarse correction through level "
            f"k+1 (u <- u + P_k(V_{{k+1}}(f_c, u_c)), visiting it {CYCLES[shape].text}), post-smoothing. A_k and B_k "
            "are grouped."
        )
        return "channel_level", (("channels", w), ("groups", groups)), doc

    def declare(
        self,
        path: str,
        widths: list[int],
        k: int,
        grid: ChannelGrid,
        origin: tuple,
        coarsest_group_size: int | None = None,
        alias: dict[str, ChannelLevel] | None = None,
        shape: str | None = None,
    ) -> ChannelLevel:
        """Channel level ``k`` of a ``shape``-cycle (default ``grid.cycle``) and the coarser ones below it.

        ``alias`` = {op: level}: instead of declaring its level-shared ``op``, this level applies
        that channel level's (a second cycle of the level, a later visit of a cycle, or an
        equal-width level with ``share_across``).
        """
        b, alias, shape = self.b, alias or {}, shape or grid.cycle
        w, coarsest = widths[k], k == len(widths) - 1
        if coarsest:
            groups = w // coarsest_group_size if coarsest_group_size else 1
        else:
            groups = w // grid.group_size
        kind, params, doc = self.doc(grid, shape, w, coarsest, groups, coarsest_group_size)
        kernel = b.spec.layers.kernel
        transfers, visits = None, []
        with b.declare(kind, path, params, doc) as block:
            shared = {}
            for op in (op for op in ("A", "B") if op in grid.share):
                if op in alias:
                    shared[op] = alias[op].shared[op]
                else:
                    role = "data to features" if op == "A" else "feature extractor"
                    shared[op] = b.conv_slot(op, w, w, op, origin, kernel=kernel, groups=groups, doc=f"{op}_k: {role}")
            # The paper's one-normalisation variant keeps two in the coarser levels and the solve.
            coarse_norms = grid.norms_per_step or b.spec.layers.norms_per_step
            norms = b.spec.layers.norms_per_step if k == 0 else coarse_norms
            pre = tuple(
                self.steps.declare(f"{path}.pre.{i}", w, origin, shared, groups, norms)
                for i in range(grid.pre_smoothing)
            )
            solve = self.steps.declare(f"{path}.solve", w, origin, shared, groups, coarse_norms) if coarsest else None
            if not coarsest:
                transfers = self.declare_transfers(w, w // grid.coarsening, grid, origin)
                for v, visit in enumerate(CYCLES[shape].visits):
                    # the first visit shares what this level's source shares one level down; later
                    # visits share the first's A_k, B_k (their norms and transfers are their own)
                    below = {op: s.visits[0] for op, s in alias.items()} if v == 0 else dict.fromkeys(shared, visits[0])
                    where = f"{path}.coarse" if v == 0 else f"{path}.coarse{v + 1}"
                    visits.append(self.declare(where, widths, k + 1, grid, origin, coarsest_group_size, below, visit))
            post = tuple(
                self.steps.declare(f"{path}.post.{i}", w, origin, shared, groups, norms)
                for i in range(grid.post_smoothing)
            )
        return ChannelLevel(block, shared, pre, solve, post, transfers, tuple(visits))

    def declare_transfers(self, w: int, h: int, grid: ChannelGrid, origin: tuple) -> Transfers:
        """R_k, Pi_k (w -> h channels) and P_k (h -> w): 1x1 convs, pairwise or dense."""
        b = self.b
        t = h if grid.transfers == "pairwise" else 1
        R = b.conv_slot("R", w, h, "R_c", origin, kernel=1, groups=t, doc="R_k: restricts the residual")
        norm_R = b.norm_slot("{n}_R", h, origin)
        Pi = b.conv_slot("Pi", w, h, "Pi_c", origin, kernel=1, groups=t, doc="Π_k: restricts u")
        norm_Pi = b.norm_slot("{n}_Pi", h, origin)
        P = b.conv_slot("P", h, w, "P_c", origin, kernel=1, groups=t, doc="P_k: prolongs the coarse result")
        norm_P = b.norm_slot("{n}_P", w, origin)
        return Transfers(R, norm_R, Pi, norm_Pi, P, norm_P)

    def run(self, level: ChannelLevel, f: str, u: str, binds: tuple[str, ...]) -> str:
        """One cycle on channel ``level`` (recursing through its visits to the coarser ones)."""
        b = self.b
        with b.run(level.block, binds, f=f, u=u):
            for s in level.pre:
                u = self.steps.run(s, f, u)
            if level.transfers:
                u = self.correct(level, f, u)
            else:
                u = self.steps.run(level.solve, f, u)
            for s in level.post:
                u = self.steps.run(s, f, u)
            level.block.outputs = (("u", u),)
        return u

    def correct(self, level: ChannelLevel, f: str, u: str) -> str:
        """The coarse correction: u <- u + P_k(e), e from the visits to level k+1."""
        b, t, w = self.b, level.transfers, level.block.param("channels")
        u_c = b.norm(b.conv(u, t.Pi), t.norm_Pi, name="u_c", note="u_c = Π_k(u)")
        r = b.sub(f, b.conv(u, level.pre[-1].A), w, "f - A(u)")
        restricted = b.norm(b.conv(r, t.R), t.norm_R)
        coarse = level.visits[0]
        f_c = b.add(
            restricted,
            b.conv(u_c, coarse.first_A),
            t.R.cout,
            "f_c",
            name="f_c",
            note="f_c = R_k(f - A_k(u)) + A_{k+1}(u_c)",
        )
        e = u_c
        for visit in level.visits:
            e = self.run(visit, f_c, e, ("e",))
        P = b.norm(b.conv(e, t.P), t.norm_P)
        return b.add(u, P, w, "u + P(e)", name="u", note="u <- u + P_k(e)")
