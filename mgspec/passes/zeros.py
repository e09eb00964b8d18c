"""Zero folding: remove work that is provably zero.

An iteration that starts from ``u = 0`` (level 1 of MgNet and MGiaD, every MGIC block) is
lowered literally: ``A(0)``, ``f - A(0)``, ``0 + du``. Convolutions have no bias, so a
convolution of zeros that keeps the shape is zero, and so is ``relu(0)`` (any activation whose
entry in :mod:`mgspec.layers` keeps zeros); ``a + 0``, ``0 + a`` and ``a - 0`` are ``a``. This
pass propagates zeros through those rules and drops what no longer reaches the output, so the
first smoothing step becomes ``u = relu(bn2(B(relu(bn1(f)))))``. The result is bit for bit the
same: adding or subtracting an exact zero changes no float.
"""

from __future__ import annotations

import networkx as nx

from mgspec.ir import node, remove_dead, rename_interfaces, replace_uses, schedule, slots
from mgspec.ops import OPS


def fold_zeros(graph: nx.DiGraph) -> nx.DiGraph:
    """Fold by each op's zero rule (:attr:`mgspec.ops.Op.zeros`)."""
    table = slots(graph)
    zero: set[str] = set()
    renamed: dict[str, str] = {}
    for node_id in schedule(graph):
        n = node(graph, node_id)
        rule = OPS[n.op].zeros
        if rule == "source":
            zero.add(node_id)
        elif rule == "keeps" and n.args[0] in zero and _keeps_shape(n, table.get(n.slot)):
            replace_uses(graph, node_id, n.args[0], renamed)  # f(0) = 0 of the same shape: the operand's zeros serve
        elif rule == "sum" and (n.args[0] in zero or n.args[1] in zero):
            replace_uses(graph, node_id, n.args[1] if n.args[0] in zero else n.args[0], renamed)
        elif rule == "difference" and n.args[1] in zero:
            replace_uses(graph, node_id, n.args[0], renamed)
    rename_interfaces(graph, renamed)
    remove_dead(graph)
    return graph


def _keeps_shape(n, s) -> bool:
    """Whether the output has the operand's shape (a convolution only with stride 1 and cin = cout)."""
    return n.cin == n.cout and (s is None or s.stride == 1)
