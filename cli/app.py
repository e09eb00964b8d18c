"""The ``mgspec`` command: each command parses options and hands off to the library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

import mgspec
from mgspec.cli import render
from mgspec.cli.errors import user_errors

app = typer.Typer(
    name="mgspec",
    help="Compile multigrid CNN specs (YAML) to PyTorch models, source code and exact counts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(help="Spec file (YAML).", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a field: PATH=VALUE (dotted path, list indices allowed). Repeatable."),
]


@app.command()
@user_errors
def validate(spec: SpecArg, set_: SetOpt = None) -> None:
    """Check a spec: schema, channel arithmetic and the lowered graph."""
    graph = mgspec.compile_graph(spec, set_)
    s = graph.graph["spec"]
    print(f"{spec}: ok ({s.name}, {s.family}, {len(graph)} ops, {len(graph.graph['slots'])} weight slots)")


@app.command()
@user_errors
def count(
    spec: SpecArg,
    set_: SetOpt = None,
    input_size: Annotated[Optional[int], typer.Option(help="Square input size for MACs (default: the spec's).", min=1)] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
) -> None:
    """Exact weights and MACs per level and operator, from the graph alone."""
    if format not in ("table", "json", "csv"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use table, json or csv")
    counts = mgspec.count_spec(spec, set_, input_size)
    if format == "json":
        print(render.counts_json(counts))
    elif format == "csv":
        print(render.counts_csv(counts), end="")
    else:
        render.counts_table(counts, Console())


def main() -> None:
    app()
