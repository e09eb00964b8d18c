"""Graph drawing: DOT, Mermaid and node-link JSON of the IR, and a readable text listing.

Resolution levels are clusters (subgraphs); channel levels are nested clusters, so the channel
V-cycle is visible; every application of a shared weight slot gets the slot's colour and a
``[shared]`` mark, so sharing can be seen at a glance.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import networkx as nx

from mgspec.ir import node, slots
from mgspec.ops import OPS

_PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#008080",
    "#9a6324",
    "#800000",
    "#808000",
    "#000075",
    "#808080",
]


def _shared(graph: nx.DiGraph) -> dict[str, str]:
    """Slots applied more than once -> a colour."""
    uses: dict[str, int] = {}
    for node_id in graph.nodes:
        s = node(graph, node_id).slot
        if s:
            uses[s] = uses.get(s, 0) + 1
    shared = [s for s, n in uses.items() if n > 1]
    return {s: _PALETTE[i % len(_PALETTE)] for i, s in enumerate(shared)}


def _label(graph: nx.DiGraph, node_id: str) -> str:
    n = node(graph, node_id)
    if n.slot:
        s = slots(graph)[n.slot]
        text = f"{n.label} {s.cin}->{s.cout}"
        if s.kind == "conv":
            text += (
                f" k{s.kernel}" + (f" s{s.stride}" if s.stride > 1 else "") + (f" g{s.groups}" if s.groups > 1 else "")
            )
        return text
    return n.label or n.op


def _scopes(graph: nx.DiGraph, node_id: str) -> list[str]:
    """Cluster path: the level, then nested channel levels (``cycle``, ``cycle.coarse``, ...)."""
    n = node(graph, node_id)
    parts = n.block.split(".")
    if len(parts) < 2 or parts[0] != "levels":
        return [n.level] if n.level else []
    out = [".".join(parts[:2])]
    for i, part in enumerate(parts[2:], start=2):
        if part in ("cycle", "coarse"):
            out.append(".".join(parts[: i + 1]))
    return out


def _tree(graph: nx.DiGraph) -> dict:
    tree: dict = {"nodes": [], "children": {}}
    for node_id in graph.nodes:
        here = tree
        for scope in _scopes(graph, node_id):
            here = here["children"].setdefault(scope, {"nodes": [], "children": {}})
        here["nodes"].append(node_id)
    return tree


def _ids(graph: nx.DiGraph) -> dict[str, str]:
    return {node_id: f"n{i}" for i, node_id in enumerate(graph.nodes)}


def to_dot(graph: nx.DiGraph) -> str:
    ids, colours = _ids(graph), _shared(graph)
    lines = [f"digraph {json.dumps(graph.graph['spec'].name)} {{", "  rankdir=TB;", "  node [shape=box, fontsize=10];"]

    def emit(tree: dict, depth: int) -> None:
        pad = "  " * depth
        for node_id in tree["nodes"]:
            n = node(graph, node_id)
            attrs = {"label": _label(graph, node_id), "tooltip": node_id}
            if n.slot in colours:
                attrs.update(color=colours[n.slot], penwidth="2", label=attrs["label"] + " [shared]")
            if OPS[n.op].draw != "box":
                attrs["shape"] = OPS[n.op].draw
            lines.append(f"{pad}{ids[node_id]} [" + ", ".join(f"{k}={json.dumps(v)}" for k, v in attrs.items()) + "];")
        for scope, child in tree["children"].items():
            lines.append(f"{pad}subgraph {json.dumps('cluster_' + scope)} {{")
            lines.append(f"{pad}  label={json.dumps(scope)};")
            emit(child, depth + 1)
            lines.append(f"{pad}}}")

    emit(_tree(graph), 1)
    for a, b in graph.edges:
        lines.append(f"  {ids[a]} -> {ids[b]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: nx.DiGraph) -> str:
    ids, colours = _ids(graph), _shared(graph)
    lines = ["flowchart TB"]

    def text(value: str) -> str:
        return '"' + value.replace('"', "#quot;") + '"'

    def emit(tree: dict, depth: int) -> None:
        pad = "  " * depth
        for node_id in tree["nodes"]:
            n = node(graph, node_id)
            label = _label(graph, node_id) + (" [shared]" if n.slot in colours else "")
            lines.append(f"{pad}{ids[node_id]}[{text(label)}]")
        for i, (scope, child) in enumerate(tree["children"].items()):
            lines.append(f"{pad}subgraph {ids[child['nodes'][0]] if child['nodes'] else 'g'}_{i}[{text(scope)}]")
            emit(child, depth + 1)
            lines.append(f"{pad}end")

    emit(_tree(graph), 1)
    for a, b in graph.edges:
        lines.append(f"  {ids[a]} --> {ids[b]}")
    for slot, colour in colours.items():
        users = [ids[n] for n in graph.nodes if node(graph, n).slot == slot]
        lines.append(
            f"  style {','.join(users)} stroke:{colour},stroke-width:3px"
            if len(users) == 1
            else "\n".join(f"  style {u} stroke:{colour},stroke-width:3px" for u in users)
        )
    return "\n".join(lines) + "\n"


def to_node_link(graph: nx.DiGraph) -> dict:
    """networkx node-link data; payloads as plain dicts, slots under ``graph.slots``."""
    plain = nx.DiGraph()
    for node_id in graph.nodes:
        plain.add_node(
            node_id, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(node(graph, node_id)).items()}
        )
    plain.add_edges_from(graph.edges(data=True))
    spec = graph.graph["spec"]
    plain.graph.update(
        name=spec.name,
        family=spec.family,
        slots={name: {**asdict(s), "origin": list(s.origin)} for name, s in slots(graph).items()},
    )
    return nx.node_link_data(plain, edges="edges")


def to_json(graph: nx.DiGraph) -> str:
    return json.dumps(to_node_link(graph), indent=1, default=str) + "\n"


def to_text(graph: nx.DiGraph) -> str:
    """One line per op, grouped by level: ``id = op(args)  cin->cout  [slot]``."""
    colours = _shared(graph)
    lines, level = [], None
    for node_id in graph.nodes:
        n = node(graph, node_id)
        if n.level != level:
            level = n.level
            lines.append(f"-- {level or 'input'} --")
        args = ", ".join(n.args)
        extra = ""
        if n.slot:
            s = slots(graph)[n.slot]
            shape = f" k{s.kernel} s{s.stride} g{s.groups}" if s.kind == "conv" else ""
            extra = f"  [{s.kind} {s.operator}{shape}{' shared' if n.slot in colours else ''}]"
        lines.append(f"{node_id} = {n.op}({args})  {n.cin}->{n.cout}{extra}")
    return "\n".join(lines) + "\n"
