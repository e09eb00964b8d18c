"""mgspec: an architecture-spec compiler for multigrid-inspired CNNs.

The pipeline, one module per stage (docs/architecture.md)::

    load (YAML -> data + locations) -> schema (-> Spec) -> lower (-> graph IR) -> verify
        -> passes (optimised graph IR, verified after each pass)
        -> build (nn.Module)   |   codegen (standalone PyTorch source)   |   count (weights, MACs)

:mod:`mgspec.pipeline` drives it; this module only exports the API. Only the runtime backend
needs torch, and it is imported on first use (``create_model``, ``build_model``,
``GraphModel``), so validating, counting and compiling start quickly.
"""

from mgspec.count import Counts, count
from mgspec.errors import Location, RunError, SpecError
from mgspec.load import Source, load_source, parse_text
from mgspec.lower import lower
from mgspec.passes import optimize
from mgspec.pipeline import (
    Overrides,
    SpecLike,
    compile_graph,
    count_spec,
    create_model,
    generate_source,
    json_schema,
    load_spec,
)
from mgspec.registry import list_models
from mgspec.schema import Spec, validate
from mgspec.verify import verify

__version__ = "0.1.0"


def __getattr__(name: str):
    # torch is imported on first use of the runtime model, so that validate, count and the
    # other commands that need no tensor start in a fraction of a second.
    if name in ("GraphModel", "build_model"):
        from mgspec import build

        return build.GraphModel if name == "GraphModel" else build.build
    raise AttributeError(f"module 'mgspec' has no attribute {name!r}")


__all__ = [
    "Counts",
    "GraphModel",
    "Location",
    "Overrides",
    "Source",
    "Spec",
    "RunError",
    "SpecError",
    "SpecLike",
    "__version__",
    "build_model",
    "compile_graph",
    "count",
    "count_spec",
    "json_schema",
    "list_models",
    "create_model",
    "generate_source",
    "load_source",
    "load_spec",
    "lower",
    "optimize",
    "parse_text",
    "validate",
    "verify",
]
