"""The pipeline's driver: a spec (path, YAML text, mapping, Source or Spec) with overrides ->
Spec -> graph IR -> verified, optimised graph, and the calls the API makes on it.

The API (:mod:`mgspec`), the trainer and the CLI call these functions; only the runtime backend
needs torch, and it is imported on first use (``create_model``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from mgspec.count import Counts, count
from mgspec.load import Source, load_source, parse_text
from mgspec.lower import lower
from mgspec.passes import optimize
from mgspec.schema import Spec, validate
from mgspec.verify import verify

if TYPE_CHECKING:
    from mgspec.build import GraphModel

#: A spec as the API takes it: a file path, YAML text, a mapping of spec data, a parsed
#: :class:`Source` or a validated :class:`Spec`.
SpecLike = str | Path | Mapping[str, Any] | Source | Spec
#: Overrides as the API takes them: ``["width=2", ...]`` (``--set`` syntax) or ``{"width": 2, ...}``.
Overrides = Sequence[str] | Mapping[str, Any] | None


def _overrides(overrides: Overrides) -> list[str]:
    """``--set``-style strings from a list of them or a mapping ``{path: value}``."""
    if overrides is None:
        return []
    if isinstance(overrides, str | bytes):
        raise TypeError(
            f"overrides must be a list or a mapping, not the string {overrides!r}; "
            f"write overrides=[{overrides!r}] or overrides={{'width': 2}}"
        )
    if isinstance(overrides, Mapping):
        return [f"{path}={_override_value(value)}" for path, value in overrides.items()]
    return [str(o) for o in overrides]


def _override_value(value: Any) -> str:
    import json

    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_override_value(v) for v in value) + "]"
    return json.dumps(value)  # numbers, booleans (true/false) and None (null) read back as YAML


def _source(spec: str | Path | Mapping[str, Any] | Source) -> str | Path | Source:
    """A path stays a path; YAML text (a string with a line break) and mappings become a Source."""
    if isinstance(spec, Mapping):
        import yaml

        return parse_text(yaml.safe_dump(dict(spec), sort_keys=False), "<dict>")
    if isinstance(spec, str) and "\n" in spec:
        return parse_text(spec, "<string>")
    from mgspec import registry

    return registry.resolve(spec)  # a built-in model's name -> its file (a path that exists wins)


def load_spec(spec: str | Path | Mapping[str, Any] | Source, overrides: Overrides = None) -> tuple[Spec, Source]:
    """Read and validate a spec (a path, YAML text, a mapping or a Source), applying overrides.

    ``overrides`` is a list of ``--set``-style ``"PATH=VALUE"`` strings or a mapping
    ``{"PATH": value}``; a single string is refused (it would be read one character at a time).
    """
    source = load_source(_source(spec), _overrides(overrides))
    return validate(source), source


def compile_graph(spec: SpecLike, overrides: Overrides = None, optimized: bool = True) -> nx.DiGraph:
    """The verified graph IR of a spec: a path, YAML text, a mapping, a Source or a Spec.

    With ``optimized`` (the default) the pass pipeline has run (:mod:`mgspec.passes`); without,
    the graph is the literal algorithm as lowered.
    """
    if isinstance(spec, Spec):
        if not _overrides(overrides):
            graph = lower(spec)
        else:
            spec = spec.model_dump(mode="json", exclude_unset=True)  # explicit nulls mean something
    if not isinstance(spec, Spec):
        parsed, source = load_spec(spec, overrides)
        graph = lower(parsed, source)
    verify(graph)
    return optimize(graph) if optimized else graph


def create_model(
    spec: SpecLike, overrides: Overrides = None, optimized: bool = True, kernels: bool = True
) -> GraphModel:
    """An ``nn.Module`` for the spec, built from its (optimised) graph.

    With ``kernels`` (the default), the grouped 3x3 convolutions where mgspec's CPU kernel is
    faster run on it for float32 channels_last inputs on CPU (compiled on first use; plain
    ``F.conv2d`` without a compiler, with ``kernels=False`` or ``MGSPEC_KERNELS=0``).

    >>> model = create_model("specs/mgiad_cifar10.yaml", {"width": 2})  # doctest: +SKIP
    """
    from mgspec.build import build

    return build(compile_graph(spec, overrides, optimized), kernels=kernels)


def generate_source(spec: SpecLike, overrides: Overrides = None, optimized: bool = True) -> str:
    """The standalone PyTorch source of a spec (what ``mgspec compile`` writes to ``<name>.py``).

    The text needs nothing but torch; it defines the model class and ``create_model()``, with the
    same state_dict keys and outputs as :func:`create_model`.
    """
    from mgspec import codegen

    return codegen.render(compile_graph(spec, overrides, optimized), overrides=_overrides(overrides))


def json_schema() -> str:
    """The JSON Schema of a spec, as committed in docs/spec.schema.json."""
    import json

    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mgspec spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def count_spec(
    spec: SpecLike,
    overrides: Overrides = None,
    input_size: int | tuple[int, int] | None = None,
    optimized: bool = True,
) -> Counts:
    """Analytic weights and MACs of a spec, without creating any tensor.

    ``input_size`` (default: the spec's ``input.size``) is the image size for the MACs: ``n`` for
    a square ``n x n`` image, or ``(height, width)``. MACs are the conv and linear
    multiply-accumulates per image (torch's flop counter / 2); BatchNorm, activations, additions
    and pooling are not counted.
    """
    return count(compile_graph(spec, overrides, optimized), input_size)
