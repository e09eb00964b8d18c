"""Optimisation passes: graph -> graph functions, run in order from one place.

:data:`PIPELINE` lists the passes; :func:`optimize` runs them on a copy of the graph,
verifies the graph after each one and records what each removed (nodes and MACs) in
``graph.graph["passes"]``. Counts, the runtime backend and the generated source all consume
the optimised graph, so what a pass removes is removed everywhere and is visible in
``mgspec count``; ``--no-optimize`` skips the pipeline and gives the literal algorithm. After the pipeline,
weight slots whose every application a pass removed are dropped (:mod:`mgspec.passes.slots`),
so the optimised model has no parameter that no op uses (``graph.graph["dropped_slots"]``).

A pass must not change the function the graph computes, in training or evaluation: the tests
compare optimised and literal models in float64 (outputs and one SGD step) on every shipped
spec and on hypothesis-drawn specs. docs/ir.md describes each pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from mgspec.ir import copy, used_slots
from mgspec.passes.cse import eliminate_common_subexpressions
from mgspec.passes.slots import drop_unapplied_slots
from mgspec.passes.zeros import fold_zeros
from mgspec.verify import verify

Pass = Callable[[nx.DiGraph], nx.DiGraph]

#: The pipeline, in order: (name shown in counts, pass).
PIPELINE: tuple[tuple[str, Pass], ...] = (
    ("fold zeros", fold_zeros),
    ("CSE", eliminate_common_subexpressions),
)


@dataclass(frozen=True)
class PassResult:
    """What one pass removed."""

    name: str
    nodes_before: int
    nodes_after: int
    macs_before: int
    macs_after: int


def optimize(graph: nx.DiGraph, passes: tuple[tuple[str, Pass], ...] = PIPELINE) -> nx.DiGraph:
    """Run ``passes`` on a copy of ``graph``, verifying after each; the input is left as it was."""
    from mgspec.count import macs

    results = []
    literal_used = used_slots(graph)
    macs_after = macs(graph)
    for name, run in passes:
        before, macs_before = len(graph), macs_after
        graph = run(copy(graph))
        verify(graph)
        macs_after = macs(graph)
        results.append(PassResult(name, before, len(graph), macs_before, macs_after))
    graph.graph["passes"] = tuple(results)
    graph.graph["dropped_slots"] = tuple(drop_unapplied_slots(graph, literal_used))
    return graph
