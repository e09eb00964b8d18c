"""Common-subexpression elimination: one value per pure op on the same operands.

Two applications of the same pure op (:attr:`mgspec.ops.Op.pure`) with the same weight
slot to the same operands compute the same tensor; the later one is replaced by the earlier
one. This removes the convolutions the multigrid algorithms apply twice: the FAS restriction
computes ``A'(u')`` for ``f'`` and the coarse level's first smoothing step computes
``f' - A'(u')`` again; inside the channel V-cycle ``f_c = R_k(...) + A_{k+1}(u_c)`` is followed
by the coarse level's first ``f_c - A_{k+1}(u_c)``.

The earlier application is kept only when the block that runs it encloses the block of the
later one, so the value can be handed down (it becomes an input of the inner block, e.g.
``SmoothingStep(f, u, Au, B)``). BatchNorm is not pure (each application updates the running
statistics in training) and is never merged. Exact: the kept tensor is the same computation.
"""

from __future__ import annotations

import networkx as nx

from mgspec.ir import node, remove_dead, rename_interfaces, replace_uses, schedule, within
from mgspec.ops import OPS


def eliminate_common_subexpressions(graph: nx.DiGraph) -> nx.DiGraph:
    seen: dict[tuple, list[str]] = {}
    renamed: dict[str, str] = {}
    for node_id in schedule(graph):
        n = node(graph, node_id)  # operands already point at the kept values
        if not OPS[n.op].pure:
            continue
        for earlier in seen.get(n.key, ()):
            if within(n.block, node(graph, earlier).block):
                replace_uses(graph, node_id, earlier, renamed)
                break
        else:
            seen.setdefault(n.key, []).append(node_id)
    rename_interfaces(graph, renamed)
    remove_dead(graph)
    return graph
