"""Stage 3: a validated :class:`~mgspec.schema.Spec` -> the graph IR.

This package is the one place where the networks' algorithms are written. Every backend
(runtime :mod:`mgspec.build`, source :mod:`mgspec.codegen`) and every count consumes the graph
it produces, after the optimisation passes (:mod:`mgspec.passes`).

Each block is first *declared* -- its module path, constructor numbers and weight slots, in
the order the modules are created (so state_dict keys agree in order everywhere) -- and then
*run*: its operator nodes are emitted in execution order, tagged with the block that runs
them, and its interface (named inputs and outputs) is recorded. Declaring returns the block's
slot handles, which running applies; declaring before running lets a block apply weights owned
by a child that runs later (the FAS restriction applies the coarse level's ``A`` before the
coarse level's smoothing). Slot names are module paths built from spec names
(``levels.l2.cycle.coarse.A``), so editing one level never renames another.

The modules: :mod:`~mgspec.lower.builder` (the graph builder: declare, slot, run, emit),
:mod:`~mgspec.lower.smoothing` (the MgNet smoothing step), :mod:`~mgspec.lower.channel` (the
SiC channel cycle), :mod:`~mgspec.lower.mgnet` (MgNet and MGiaD: resolution levels and FAS),
:mod:`~mgspec.lower.resnet` (ResNet and MGIC stages), :mod:`~mgspec.lower.ends` (stem, head).

The algorithms (docs/architectures.md has the derivations):

- MgNet smoothing step: ``u <- u + act(norm2(B(act(norm1(f - A(u))))))`` (act and norm are
  the spec's layers, :mod:`mgspec.layers`; ReLU and BatchNorm by default).
- FAS between resolution levels: ``u' = Pi(u)``, ``f' = R(relu(f - A(u))) + A'(u')``.
- SiC channel cycle on channel level k: pre-smoothing; then either
  ``u_c = bn(Pi_k(u))``, ``f_c = bn(R_k(f - A_k(u))) + A_{k+1}(u_c)``,
  ``u <- u + bn(P_k(e))`` with ``e`` from the visits to level k+1 that the cycle's shape lists
  (:data:`mgspec.cycles.CYCLES`: a V-cycle visits once, a W-cycle twice) or, on the coarsest
  level, one more smoothing step; then post-smoothing.

The lowering is literal: u starts as an explicit zero on level 1 (and in every MGIC block),
and ``A(u)`` is applied wherever the algorithm writes it. Removing the provably zero work and
the repeated applications is the job of the passes, so ``mgspec count --no-optimize`` gives
the algorithm's own MACs.
"""

from __future__ import annotations

import networkx as nx

from mgspec.layers import resolve as resolve_layers
from mgspec.load import Source
from mgspec.lower.builder import Builder
from mgspec.lower.mgnet import ResolutionLevels
from mgspec.lower.resnet import ResNetStage
from mgspec.schema import MgNetGrid, Spec


def _lower(b: Builder) -> nx.DiGraph:
    spec = b.spec
    grid, channels = spec.resolution_grid, spec.input.channels
    title = f"{spec.name}: the {spec.family} network compiled by mgspec."
    with b.declare("model", "", (), title) as root:
        pass
    b.owner = root  # every top-level block is declared into the model
    x = b.emit("input", (), channels, channels, "input", name="x")
    with b.run(root, ("logits",), x=x):
        family = ResolutionLevels(b) if isinstance(grid, MgNetGrid) else ResNetStage(b)
        logits = family.lower(x, grid)
        b.level = ""
        n = spec.classes
        root.outputs = (("logits", b.emit("output", (logits,), n, n, "output")),)
    b.graph.graph.update(slots=b.slots, blocks=root.freeze(), spec=spec)
    return b.graph


def lower(spec: Spec, source: Source | None = None) -> nx.DiGraph:
    """Lower a spec to the literal graph IR (unverified, unoptimised; see :mod:`mgspec.passes`)."""
    graph = _lower(Builder(spec, source, resolve_layers(spec.layers)))
    graph.graph["source"] = source.name if source else "<spec>"
    graph.graph["locations"] = dict(source.locations) if source else {}  # where later checks point
    graph.graph["sha256"] = source.sha256 if source else ""
    return graph
