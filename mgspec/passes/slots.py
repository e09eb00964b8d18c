"""Weight pruning: drop the weight slots the passes left without an application.

A slot every literal application of which a pass removed (the first smoothing step's own
``A`` applied to ``u = 0`` on level 1 with ``share: []``, or in every MGIC block) would be a
parameter that no op reads: it never gets a gradient, and a model with such parameters breaks
DistributedDataParallel without ``find_unused_parameters``. This step removes those slots, so
the model never creates them. Slots the literal graph itself never applies -- the paper's
level-1 R/Π, which a spec asks for explicitly with ``level1_transfers: true`` -- are kept:
counts report them as unused.
"""

from __future__ import annotations

import networkx as nx

from mgspec.ir import slots, used_slots


def drop_unapplied_slots(graph: nx.DiGraph, literal_used: set[str]) -> list[str]:
    """Remove the slots applied in the literal graph (``literal_used``) but no longer; their names."""
    used = used_slots(graph)
    dropped = [name for name in slots(graph) if name in literal_used and name not in used]
    graph.graph["slots"] = {name: s for name, s in slots(graph).items() if name not in dropped}
    return dropped
