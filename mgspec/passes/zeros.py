"""Zero folding: remove work that is provably zero.

An iteration that starts from ``u = 0`` (level 1 of MgNet and MGiaD, every MGIC block) is
lowered literally: ``A(0)``, ``f - A(0)``, ``0 + du``. Convolutions have no bias, so a
convolution of zeros that keeps the shape is zero, and so is ``relu(0)``; ``a + 0``, ``0 + a``
and ``a - 0`` are ``a``. This pass propagates zeros through those rules and drops what no
longer reaches the output, so the first smoothing step becomes ``u = relu(bn2(B(relu(bn1(f)))))``.
The result is bit for bit the same: adding or subtracting an exact zero changes no float.
"""

from __future__ import annotations

import networkx as nx

from mgspec.ir import ACTIVATIONS, node, remove_dead, rename_interfaces, replace_uses, schedule, slots


def fold_zeros(graph: nx.DiGraph) -> nx.DiGraph:
    table = slots(graph)
    zero: set[str] = set()
    renamed: dict[str, str] = {}
    for node_id in schedule(graph):
        n = node(graph, node_id)
        if n.op == "zero":
            zero.add(node_id)
        elif n.op in ACTIVATIONS and n.args[0] in zero:  # every activation maps 0 to 0
            replace_uses(graph, node_id, n.args[0], renamed)
        elif n.op == "conv" and n.args[0] in zero:
            s = table[n.slot]
            if s.cin == s.cout and s.stride == 1:  # same shape: the operand's zeros serve
                replace_uses(graph, node_id, n.args[0], renamed)
        elif n.op == "add" and (n.args[0] in zero or n.args[1] in zero):
            replace_uses(graph, node_id, n.args[1] if n.args[0] in zero else n.args[0], renamed)
        elif n.op == "sub" and n.args[1] in zero:
            replace_uses(graph, node_id, n.args[0], renamed)
    rename_interfaces(graph, renamed)
    remove_dead(graph)
    return graph
