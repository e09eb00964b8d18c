"""The torch-only helper classes a generated file includes: copied from :mod:`mgspec.torch_ops`.

A slot kind whose module is not a torch class names a class of :mod:`mgspec.torch_ops` by its
bare name (``LayerNorm2d``); the runtime builds that class and the generated file defines it,
copied as written, so both backends run the same code. The source is read as text, without
importing torch.
"""

from __future__ import annotations

import ast
from functools import cache
from importlib import resources

import networkx as nx

from mgspec.ir import slots
from mgspec.ops import SLOTS


@cache
def _definitions() -> dict[str, str]:
    text = resources.files("mgspec").joinpath("torch_ops.py").read_text(encoding="utf-8")
    tree = ast.parse(text)
    return {d.name: ast.get_source_segment(text, d) + "\n" for d in tree.body if isinstance(d, ast.ClassDef)}


def helper_sources(graph: nx.DiGraph) -> list[str]:
    """The source of every helper class the graph's slots build, in first-use order."""
    names = dict.fromkeys(SLOTS[s.kind].ctor(s).func for s in slots(graph).values())
    wanted = [name for name in names if "." not in name]
    missing = [name for name in wanted if name not in _definitions()]
    if missing:
        raise KeyError(f"mgspec.torch_ops defines no class {missing}")
    return [_definitions()[name] for name in wanted]


def helper_names() -> frozenset[str]:
    """Names a generated file may define for helpers (reserved from class names)."""
    return frozenset(_definitions())
