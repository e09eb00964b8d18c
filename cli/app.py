"""The ``mgspec`` command: each command parses options and hands off to the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from mgspec.cli import render
from mgspec.cli.errors import user_errors
from rich.console import Console

import mgspec

app = typer.Typer(
    name="mgspec",
    help="Compile multigrid CNN specs (YAML) to PyTorch models, source code and exact counts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(help="Spec file (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
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
    input_size: Annotated[
        int | None, typer.Option(help="Square input size for MACs (default: the spec's).", min=1)
    ] = None,
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


@app.command("compile")
@user_errors
def compile_(
    specs: Annotated[list[Path], typer.Argument(help="Spec files (YAML).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the generated <name>.py files.")],
    set_: SetOpt = None,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if any file in OUT is stale.")] = False,
) -> None:
    """Generate standalone PyTorch source (one <name>.py per spec)."""
    from mgspec import codegen

    # Render everything first: one bad spec leaves no partial output behind.
    rendered: dict[Path, str] = {}
    for spec in specs:
        graph = mgspec.compile_graph(spec, set_)
        target = out / f"{graph.graph['spec'].name}.py"
        if target in rendered:
            raise mgspec.SpecError(f"two specs are named {target.stem!r}", mgspec.Location(str(spec)), "name")
        rendered[target] = codegen.render(graph)
    if check:
        stale = [str(path) for path, text in rendered.items() if not codegen.is_current(path, text)]
        if stale:
            print("stale: " + ", ".join(stale), file=sys.stderr)
            print(f"update with: mgspec compile {' '.join(map(str, specs))} -o {out}", file=sys.stderr)
            raise typer.Exit(1)
        print(f"{len(rendered)} file(s) up to date in {out}")
        return
    for path, text in rendered.items():
        print(f"{'wrote' if codegen.write(path, text) else 'unchanged'} {path}")


@app.command()
@user_errors
def schema() -> None:
    """Print the spec's JSON Schema (for editor completion and validation)."""
    print(mgspec.json_schema(), end="")


@app.command("list")
@user_errors
def list_(
    directory: Annotated[Path, typer.Option("--dir", help="Directory of specs.")] = Path("specs"),
) -> None:
    """The specs in a directory, with name, family and weights."""
    from rich.table import Table

    table = Table("spec", "name", "family", "weights", "description")
    for path in sorted(directory.glob("*.yaml")):
        counts = mgspec.count_spec(path)
        spec, _ = mgspec.load_spec(path)
        table.add_row(str(path), counts.name, counts.family, f"{counts.total:,}", spec.description)
    Console(width=200).print(table)


@app.command()
@user_errors
def show(spec: SpecArg, set_: SetOpt = None) -> None:
    """Print the graph IR readably: one op per line, grouped by level."""
    from mgspec import export

    print(export.to_text(mgspec.compile_graph(spec, set_)), end="")


@app.command()
@user_errors
def graph(
    spec: SpecArg,
    set_: SetOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="dot, mermaid or json (networkx node-link).")] = "dot",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here; .svg/.png render DOT with Graphviz.")
    ] = None,
) -> None:
    """Export the graph IR: levels as clusters, the channel V-cycle nested, shared slots marked."""
    from mgspec import export

    renderers = {"dot": export.to_dot, "mermaid": export.to_mermaid, "json": export.to_json}
    if format not in renderers:
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use dot, mermaid or json")
    g = mgspec.compile_graph(spec, set_)
    if out is not None and out.suffix in (".svg", ".png"):
        import shutil
        import subprocess

        dot = shutil.which("dot")
        if dot is None:
            raise mgspec.SpecError(
                f"rendering {out.suffix} needs Graphviz's 'dot', which is not installed",
                hint=f"install graphviz, or write DOT text: -o {out.with_suffix('.dot')}",
            )
        subprocess.run([dot, f"-T{out.suffix[1:]}", "-o", str(out)], input=export.to_dot(g), text=True, check=True)
        print(f"wrote {out}")
        return
    text = renderers[format](g)
    if out is None:
        print(text, end="")
    else:
        from mgspec import codegen

        codegen.write(out, text)
        print(f"wrote {out}")


def main() -> None:
    app()
