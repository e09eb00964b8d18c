"""The view-model: every string the template lays out, computed from the graph.

Input: a verified graph. Output: a dict for ``model.py.j2``. The block tree decides which
classes are emitted and how the model's ``__init__`` constructs them; the node table gives
the shapes for comments; the count gives the docstring table. Names pass through the
namespace helper; spec strings only reach the source as ``repr`` literals.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from mgspec import __version__
from mgspec.codegen.namespace import Namespace, camel_case
from mgspec.count import count
from mgspec.ir import Block, node
from mgspec.verify import spatial_sizes

#: Names the generated module defines; the model class must not collide with them.
MODULE_NAMES = {
    "torch",
    "F",
    "nn",
    "conv3x3",
    "pairwise",
    "Stem",
    "SmoothingStep",
    "FASLevel",
    "MgNetLevel",
    "ChannelLevel",
    "MGiaDLevel",
    "BasicBlock",
    "CycleBlock",
    "ResNetLevel",
    "Head",
    "create_model",
}

_CLASS_KINDS = {
    "mgnet_level": {"smoothing_step", "fas_level", "mgnet_level"},
    "mgiad_level": {"smoothing_step", "fas_level", "channel_level", "mgiad_level"},
    "resnet_level": {"resnet_level"},
    "basic_block": {"basic_block"},
    "cycle_block": {"smoothing_step", "channel_level", "cycle_block"},
}


def _walk(block: Block):
    yield block
    for child in block.children:
        yield from _walk(child)


def _channel_args(tree: Block) -> str:
    widths = [b.attr("width") for b in _walk(tree)]
    return f"widths={widths!r}, group_size={tree.attr('group_size')}, pre={tree.attr('pre')}, post={tree.attr('post')}"


def _level_init(block: Block) -> str:
    a = block.attr
    if block.kind == "mgnet_level":
        return (
            f"MgNetLevel({a('cin')}, {a('channels')}, steps={a('steps')}, share_A={a('share_A')}, "
            f"share_B={a('share_B')}, groups={a('groups')}, transfers={a('transfers')})"
        )
    if block.kind == "mgiad_level":
        return (
            f"MGiaDLevel({a('cin')}, {a('channels')}, {_channel_args(block.children[0])}, transfers={a('transfers')})"
        )
    assert block.kind == "resnet_level", block.kind
    parts = []
    for child in block.children:
        if child.kind == "basic_block":
            c = child.attr
            parts.append(f"BasicBlock({c('cin')}, {c('cout')}, stride={c('stride')}, shortcut={c('shortcut')!r})")
        else:
            parts.append(f"CycleBlock({_channel_args(child.children[0])})")
    return "ResNetLevel([" + ", ".join(parts) + "])"


def _shape(shapes: dict, graph: nx.DiGraph, level: str) -> str:
    """N x C x H x W of the last node of a level (its output)."""
    last = [n for n in graph.nodes if node(graph, n).level == level][-1]
    c, h, w = shapes[last]
    return f"N x {c} x {h} x {w}"


def display_path(source: str) -> str:
    """The spec path as the header shows it: relative to the working directory, else its name."""
    path = Path(source)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return path.name


def view_model(graph: nx.DiGraph, regenerate: str | None = None) -> dict:
    spec = graph.graph["spec"]
    tree: Block = graph.graph["blocks"]
    counts = count(graph)
    shapes = spatial_sizes(graph, spec.input.size)
    names = Namespace(MODULE_NAMES)
    class_name = names.create(camel_case(spec.name))

    kinds: set[str] = set()
    for block in _walk(tree):
        kinds |= _CLASS_KINDS.get(block.kind, set())
    stem, *levels, head = tree.children
    level_inits, forward = [], []
    mg = levels[0].kind in ("mgnet_level", "mgiad_level")
    x = "f" if mg else "x"
    forward.append(f"{x} = self.stem(x)  # {'f_1: ' if mg else ''}{_shape(shapes, graph, 'stem')}")
    previous = None
    for block in levels:
        name = block.attr("name")
        key = repr(name)
        level_inits.append(f"{key}: {_level_init(block)},")
        out = _shape(shapes, graph, name)
        if not mg:
            forward.append(f"x = levels[{key}](x)  # {out}")
        elif previous is None:
            forward.append(f"u = levels[{key}](f, None)  # u = 0 on entry; {out}")
        else:
            forward.append(f"f, u = levels[{key}].restrict(f, u, levels[{previous}].A_out)  # FAS to level {name}")
            forward.append(f"u = levels[{key}](f, u)  # {out}")
        previous = key
    forward.append(f"return self.head({'u' if mg else 'x'})  # N x {spec.classes}")

    source = display_path(graph.graph["source"])
    rows = [f"{'level':<10}{'weights':>14}{'MACs':>16}"]
    for level, weights in counts.by_level.items():
        rows.append(f"{level:<10}{weights:>14,}{counts.macs_by_level.get(level, 0):>16,}")
    rows.append(f"{'total':<10}{counts.total:>14,}{counts.macs:>16,}")
    unused = (
        f"{counts.unused:,} of them in never-applied slots: {', '.join(counts.unused_slots)}"
        if counts.unused
        else "every weight is used"
    )
    sa, hd = stem.attr, head.attr
    return {
        "version": __version__,
        "source_name": source,
        "sha256": graph.graph["sha256"],
        "regenerate": regenerate or f"mgspec compile {source} -o <dir>",
        "title": f"{spec.name}: the {spec.family} network compiled by mgspec.",
        "description": (spec.description or "(no description)").replace('"""', "'''").replace("\\", "/"),
        "total": f"{counts.total:,}",
        "unused_note": unused,
        "size": spec.input.size,
        "macs": f"{counts.macs:,}",
        "count_rows": rows,
        "kinds": sorted(kinds),
        "class_name": class_name,
        "stem_init": f"Stem({sa('cin')}, {sa('cout')}, kernel={sa('kernel')})",
        "level_inits": level_inits,
        "head_init": f"Head({hd('cin')}, {hd('classes')}, bias={hd('bias')})",
        "forward_lines": forward,
    }
