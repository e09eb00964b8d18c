"""mgspec: an architecture-spec compiler for multigrid-inspired CNNs.

The pipeline, one module per stage::

    load (YAML -> data + locations) -> schema (-> Spec) -> lower (-> graph IR) -> verify
        -> build (nn.Module)   |   codegen (standalone PyTorch source)   |   count (weights, MACs)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import networkx as nx

from mgspec.build import GraphModel
from mgspec.build import build as build_model
from mgspec.count import Counts, count
from mgspec.errors import Location, SpecError
from mgspec.load import Source, load_source, parse_text
from mgspec.lower import lower
from mgspec.schema import Spec, validate
from mgspec.verify import verify

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
    "parse_text",
    "validate",
    "verify",
]


def load_spec(spec: str | Path | Source, overrides: Sequence[str] | None = None) -> tuple[Spec, Source]:
    """Read and validate a spec, applying ``--set``-style overrides."""
    source = load_source(spec, list(overrides or ()))
    return validate(source), source


def compile_graph(spec: SpecLike, overrides: Sequence[str] | None = None) -> nx.DiGraph:
    """The verified graph IR of a spec (a path, a parsed Source, or a Spec)."""
    if isinstance(spec, Spec):
        if overrides:
            raise ValueError("overrides apply to spec files or sources, not to a validated Spec")
        graph = lower(spec)
    else:
        parsed, source = load_spec(spec, overrides)
        graph = lower(parsed, source)
    verify(graph)
    return graph


def create_model(spec: SpecLike, overrides: Sequence[str] | None = None) -> GraphModel:
    """An ``nn.Module`` for the spec, built from its graph."""
    return build_model(compile_graph(spec, overrides))


def json_schema() -> str:
    """The JSON Schema of a spec, as committed in docs/spec.schema.json."""
    import json

    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mgspec spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def count_spec(spec: SpecLike, overrides: Sequence[str] | None = None, input_size: int | None = None) -> Counts:
    """Analytic weights and MACs of a spec, without creating any tensor."""
    return count(compile_graph(spec, overrides), input_size)
