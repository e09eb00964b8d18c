"""mgspec: an architecture-spec compiler for multigrid-inspired CNNs.

The pipeline, one module per stage::

    load (YAML -> data + locations) -> schema (-> Spec) -> lower (-> graph IR) -> verify
        -> passes (optimised graph IR, verified after each pass)
        -> build (nn.Module)   |   codegen (standalone PyTorch source)   |   count (weights, MACs)

Only the runtime backend needs torch, and it is imported on first use (``create_model``,
``build_model``, ``GraphModel``), so validating, counting and compiling start quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx

from mgspec.count import Counts, count
from mgspec.errors import Location, SpecError
from mgspec.load import Source, load_source, parse_text
from mgspec.lower import lower
from mgspec.passes import optimize
from mgspec.schema import Spec, validate
from mgspec.verify import verify

if TYPE_CHECKING:
    from mgspec.build import GraphModel

__version__ = "0.1.0"

SpecLike = str | Path | Source | Spec

__all__ = [
    "Counts",
    "GraphModel",
    "Location",
    "Source",
    "Spec",
    "SpecError",
    "__version__",
    "build_model",
    "compile_graph",
    "count",
    "count_spec",
    "json_schema",
    "create_model",
    "load_source",
    "load_spec",
    "lower",
    "optimize",
    "parse_text",
    "validate",
    "verify",
]


def load_spec(spec: str | Path | Source, overrides: Sequence[str] | None = None) -> tuple[Spec, Source]:
    """Read and validate a spec, applying ``--set``-style overrides."""
    source = load_source(spec, list(overrides or ()))
    return validate(source), source


def __getattr__(name: str):
    """The torch-backed names, imported on first use."""
    if name in ("GraphModel", "build_model"):
        from mgspec import build

        return build.GraphModel if name == "GraphModel" else build.build
    raise AttributeError(f"module 'mgspec' has no attribute {name!r}")


def compile_graph(spec: SpecLike, overrides: Sequence[str] | None = None, optimized: bool = True) -> nx.DiGraph:
    """The verified graph IR of a spec (a path, a parsed Source, or a Spec).

    With ``optimized`` (the default) the pass pipeline has run (:mod:`mgspec.passes`); without,
    the graph is the literal algorithm as lowered.
    """
    if isinstance(spec, Spec):
        if overrides:
            raise ValueError("overrides apply to spec files or sources, not to a validated Spec")
        graph = lower(spec)
    else:
        parsed, source = load_spec(spec, overrides)
        graph = lower(parsed, source)
    verify(graph)
    return optimize(graph) if optimized else graph


def create_model(spec: SpecLike, overrides: Sequence[str] | None = None, optimized: bool = True) -> GraphModel:
    """An ``nn.Module`` for the spec, built from its (optimised) graph."""
    from mgspec.build import build

    return build(compile_graph(spec, overrides, optimized))


def json_schema() -> str:
    """The JSON Schema of a spec, as committed in docs/spec.schema.json."""
    import json

    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mgspec spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def count_spec(
    spec: SpecLike, overrides: Sequence[str] | None = None, input_size: int | None = None, optimized: bool = True
) -> Counts:
    """Analytic weights and MACs of a spec, without creating any tensor."""
    return count(compile_graph(spec, overrides, optimized), input_size)
