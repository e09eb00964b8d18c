"""Commands on specs: validate, count, compile, schema, list, show, graph, export.

(No ``from __future__ import annotations`` here: typer evaluates the annotations.)
"""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

import mgspec
from mgspec.cli import render
from mgspec.cli.common import OptimizeOpt, SetOpt, SpecArg, SpecsArg, _set_options, app, spec_input
from mgspec.cli.errors import USER_ERROR, report, user_errors


@app.command()
@user_errors
def validate(specs: SpecsArg, set_: SetOpt = None) -> None:
    """Check specs: schema, channel arithmetic and the lowered graph (every spec; exit 2 if any fails)."""
    from mgspec.cli.errors import USER_ERROR, report

    failed = 0
    for spec in specs:
        try:
            graph = mgspec.compile_graph(spec_input(spec), set_)
        except mgspec.SpecError as exc:
            report(str(exc))
            failed += 1
            continue
        s = graph.graph["spec"]
        print(f"{spec}: ok ({s.name}, {s.family}, {len(graph)} ops, {len(graph.graph['slots'])} weight slots)")
    if failed:
        if len(specs) > 1:
            print(f"{failed} of {len(specs)} specs are invalid", file=sys.stderr)
        raise typer.Exit(USER_ERROR)


@app.command()
@user_errors
def count(
    spec: SpecArg,
    set_: SetOpt = None,
    input_size: Annotated[
        int | None, typer.Option(help="Square input size for MACs (default: the spec's).", min=1)
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    optimize: OptimizeOpt = True,
) -> None:
    """Exact weights and MACs per level and operator, from the graph alone, and what the passes removed."""
    if format not in ("table", "json", "csv"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use table, json or csv")
    counts = mgspec.count_spec(spec_input(spec), set_, input_size, optimized=optimize)
    if format == "json":
        print(render.counts_json(counts))
    elif format == "csv":
        print(render.counts_csv(counts), end="")
    else:
        render.counts_table(counts, render.console())


@app.command("compile")
@user_errors
def compile_(
    specs: SpecsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the generated <name>.py files.")],
    set_: SetOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if any file in OUT is missing or stale.")
    ] = False,
    optimize: OptimizeOpt = True,
) -> None:
    """Generate standalone PyTorch source (one <name>.py per spec)."""
    from mgspec import codegen

    # Render everything first: one bad spec leaves no partial output behind.
    rendered: dict[Path, str] = {}
    for spec in specs:
        graph = mgspec.compile_graph(spec_input(spec), set_, optimize)
        target = out / f"{graph.graph['spec'].name}.py"
        if target in rendered:
            raise mgspec.SpecError(f"two specs are named {target.stem!r}", mgspec.Location(str(spec)), "name")
        rendered[target] = codegen.render(graph)
    if check:
        import shlex

        missing = [str(path) for path in rendered if not path.exists()]
        stale = [str(path) for path, text in rendered.items() if path.exists() and not codegen.is_current(path, text)]
        if missing or stale:
            if missing:
                print("missing: " + ", ".join(missing), file=sys.stderr)
            if stale:
                print("stale: " + ", ".join(stale), file=sys.stderr)
            command = f"mgspec compile {' '.join(shlex.quote(str(s)) for s in specs)} -o {shlex.quote(str(out))}"
            print(f"update with: {command}{_set_options(set_)}{'' if optimize else ' --no-optimize'}", file=sys.stderr)
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
    directory: Annotated[Path, typer.Option("--dir", help="Directory of specs (*.yaml and *.yml).")] = Path("specs"),
) -> None:
    """The specs in a directory, with name, family and weights; invalid specs are listed with their error."""
    from rich.table import Table

    if not directory.is_dir():
        raise mgspec.SpecError(
            "no such directory" if not directory.exists() else "not a directory",
            mgspec.Location(str(directory)),
            hint="list --dir DIR names a folder of specs",
        )
    table = Table("spec", "name", "family", "weights", "description")
    paths = sorted({*directory.glob("*.yaml"), *directory.glob("*.yml")})
    invalid: list[mgspec.SpecError] = []
    for path in paths:
        try:  # one bad file is a row of the table (and an error below); the others are still listed
            spec, _ = mgspec.load_spec(path)
            counts = mgspec.count_spec(spec)
        except mgspec.SpecError as exc:
            invalid.append(exc)
            table.add_row(str(path), "", "invalid", "", f"[red]{escape(str(exc))}[/red]")
            continue
        table.add_row(str(path), counts.name, counts.family, f"{counts.total:,}", escape(spec.description))
    render.console().print(table)
    for exc in invalid:
        report(str(exc))
    if not paths:
        print(f"no specs (*.yaml, *.yml) in {directory}", file=sys.stderr)
    elif invalid:
        print(f"{len(invalid)} of {len(paths)} specs are invalid", file=sys.stderr)
        raise typer.Exit(USER_ERROR)


@app.command()
@user_errors
def show(spec: SpecArg, set_: SetOpt = None, optimize: OptimizeOpt = True) -> None:
    """Print the graph IR readably: one op per line, grouped by level."""
    from mgspec import drawing

    print(drawing.to_text(mgspec.compile_graph(spec_input(spec), set_, optimize)), end="")


@app.command()
@user_errors
def graph(
    spec: SpecArg,
    set_: SetOpt = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="dot, mermaid or json (networkx node-link) (default: from -o's extension .dot/.gv, .mmd, .json; "
            "else dot).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here; .svg/.png render DOT with Graphviz.")
    ] = None,
    optimize: OptimizeOpt = True,
) -> None:
    """Export the graph IR: levels as clusters, the channel V-cycle nested, shared slots marked."""
    from mgspec import drawing

    renderers = {"dot": drawing.to_dot, "mermaid": drawing.to_mermaid, "json": drawing.to_json}
    if format is None:
        by_suffix = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid", ".json": "json"}
        format = by_suffix.get(out.suffix.lower(), "dot") if out is not None else "dot"
    if format not in renderers:
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use dot, mermaid or json")
    g = mgspec.compile_graph(spec_input(spec), set_, optimize)
    if out is not None and out.suffix in (".svg", ".png"):
        import shutil
        import subprocess

        dot = shutil.which("dot")
        if dot is None:
            raise mgspec.SpecError(
                f"rendering {out.suffix} needs Graphviz's 'dot', which is not installed",
                hint=f"install graphviz, or write DOT text: -o {out.with_suffix('.dot')}",
            )
        subprocess.run([dot, f"-T{out.suffix[1:]}", "-o", str(out)], input=drawing.to_dot(g), text=True, check=True)
        print(f"wrote {out}")
        return
    text = renderers[format](g)
    if out is None:
        print(text, end="")
    else:
        from mgspec import codegen

        codegen.write(out, text)
        print(f"wrote {out}")


@app.command()
@user_errors
def export(
    spec: SpecArg,
    onnx: Annotated[Path, typer.Option("--onnx", help="Write the model as ONNX to this file.", show_default=False)],
    set_: SetOpt = None,
    run: Annotated[
        Path | None,
        typer.Option(help="Take the weights from this run directory (or checkpoint file); default: random init."),
    ] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Any batch size (default: fixed).")] = False,
    batch_size: Annotated[int, typer.Option(help="The fixed batch size, and the checks' batch.", min=1)] = 1,
    opset: Annotated[int, typer.Option(help="ONNX opset to write.", min=7)] = 18,
) -> None:
    """Export for inference (eval mode, BatchNorm folded) as ONNX, checked against PyTorch first."""
    from mgspec import deploy

    overrides = list(set_ or [])
    if run is not None and not set_ and (run / "config.json").is_file():
        overrides = json.loads((run / "config.json").read_text())["spec"]["overrides"]
    graph = mgspec.compile_graph(spec, overrides)
    model = mgspec.build_model(graph)
    if run is not None:
        deploy.load_run_weights(model, run)
    s = graph.graph["spec"]
    report = deploy.export_onnx(
        model,
        onnx,
        input_shape=(s.input.channels, s.input.size, s.input.size),
        opset=opset,
        dynamic_batch=dynamic_batch,
        batch=batch_size,
    )
    checked = (
        f"matches PyTorch on random inputs in ONNX Runtime (max abs error {report.max_error:.2g})"
        if report.max_error is not None
        else "passes onnx.checker; install onnxruntime to also compare it with PyTorch"
    )
    batch = "dynamic batch" if dynamic_batch else f"batch {batch_size}"
    print(f"wrote {onnx} (opset {report.opset}, {batch}, {report.folded} BatchNorms folded); {checked}")
