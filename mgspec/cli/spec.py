"""Commands on specs: validate, count, compile, schema, list, show, graph, export.

(No ``from __future__ import annotations`` here: typer evaluates the annotations.)
"""

import fnmatch
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

import mgspec
from mgspec.cli import render
from mgspec.cli.common import OptimizeOpt, SetOpt, SpecArg, SpecsArg, app, spec_input
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
    cost: Annotated[
        bool, typer.Option("--cost", help="Also the cost of a training step: FLOPs, bytes, kernels, floor.")
    ] = False,
    batch: Annotated[int, typer.Option("--batch", help="Batch size for --cost.", min=1)] = 128,
    dtype: Annotated[str, typer.Option("--dtype", help="bf16 or fp32, for --cost.")] = "bf16",
) -> None:
    """Exact weights and MACs per level and operator, from the graph alone, and what the passes removed."""
    if format not in ("table", "json", "csv"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use table, json or csv")
    if dtype not in ("bf16", "fp32"):
        raise mgspec.SpecError(f"unknown dtype {dtype!r}", hint="use bf16 or fp32")
    counts = mgspec.count_spec(spec_input(spec), set_, input_size, optimized=optimize)
    step = None
    if cost:
        from mgspec.cost import cost as cost_of

        graph = mgspec.compile_graph(spec_input(spec), set_, optimize)
        step = cost_of(graph, batch, dtype, input_size).as_dict()
    if format == "json":
        print(render.counts_json(counts, step))
    elif format == "csv":
        print(render.counts_csv(counts) + render.cost_csv(step), end="")
    else:
        render.counts_table(counts, render.console())
        if step:
            render.cost_table(step, render.console())


@app.command("compile")
@user_errors
def compile_(
    specs: SpecsArg,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Directory for the generated <name>.py (with --set: <name>_<field>_<value>.py)."
        ),
    ],
    set_: SetOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if any file in OUT is missing or stale.")
    ] = False,
    optimize: OptimizeOpt = True,
) -> None:
    """Generate standalone PyTorch source (one <name>.py per spec)."""
    from mgspec import codegen

    # Render everything first: one bad spec leaves no partial output behind.
    set_ = [_tidy(s) for s in set_ or ()]  # `width = 2` is `width=2`: one file name, one header
    rendered: dict[Path, str] = {}
    for spec in specs:
        graph = mgspec.compile_graph(spec_input(spec), set_, optimize)
        target = out / codegen.file_name(graph.graph["spec"].name, set_ or ())
        if target in rendered:
            raise mgspec.SpecError(f"two specs are named {target.stem!r}", mgspec.Location(str(spec)), "name")
        rendered[target] = codegen.render(graph, overrides=set_ or ())
        if (why := codegen.conflict(target, rendered[target])) is not None:
            raise mgspec.SpecError(why, mgspec.Location(str(spec)), hint="compile into another directory (-o)")
    if check:
        from mgspec.codegen.view import set_options, shell_word

        missing = [str(path) for path in rendered if not path.exists()]
        stale = [str(path) for path, text in rendered.items() if path.exists() and not codegen.is_current(path, text)]
        if missing or stale:
            if missing:
                print("missing: " + ", ".join(missing), file=sys.stderr)
            if stale:
                print("stale: " + ", ".join(stale), file=sys.stderr)
            command = f"mgspec compile {' '.join(shell_word(str(s)) for s in specs)} -o {shell_word(str(out))}"
            print(f"update with: {command}{set_options(set_)}{'' if optimize else ' --no-optimize'}", file=sys.stderr)
            raise typer.Exit(1)
        print(f"{len(rendered)} file(s) up to date in {out}")
        return
    for path, changed in _write_all(rendered).items():
        print(f"{'wrote' if changed else 'unchanged'} {path}")


def _tidy(override: str) -> str:
    path, sep, value = override.partition("=")
    return f"{path.strip()}{sep}{value.strip()}"


def _write_all(rendered: dict[Path, str]) -> dict[Path, bool]:
    """Write every file or none: all are staged as temporary files first, then renamed into place."""
    import os
    import tempfile

    from mgspec import codegen

    changed = {path: not codegen.is_current(path, text) for path, text in rendered.items()}
    umask = os.umask(0)  # mkstemp makes files private; generated files follow the user's umask
    os.umask(umask)
    staged: dict[Path, str] = {}
    try:
        for path, text in rendered.items():
            if not changed[path]:
                continue
            if path.exists() and not path.is_file():
                raise mgspec.SpecError("exists and is not a regular file", mgspec.Location(str(path)))
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged[path] = tmp
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o666 & ~umask)
        for path, tmp in staged.items():
            os.replace(tmp, path)
    finally:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)
    return changed


@app.command()
@user_errors
def schema() -> None:
    """Print the spec's JSON Schema (for editor completion and validation)."""
    print(mgspec.json_schema(), end="")


@app.command("list")
@user_errors
def list_(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="Directory of specs (*.yaml and *.yml) (default: the built-in models).", show_default=False
        ),
    ] = None,
    pattern: Annotated[
        str | None, typer.Argument(help="Only names matching this glob, e.g. '*mgiad*'.", show_default=False)
    ] = None,
) -> None:
    """Built-in models (or a directory's specs) with name, family and weights; invalid specs show their error."""
    from rich.table import Table

    from mgspec import registry

    if directory is None:
        paths = [registry.spec_path(name) for name in mgspec.list_models(pattern)]
        shown = [path.stem for path in paths]
    else:
        if not directory.is_dir():
            raise mgspec.SpecError(
                "no such directory" if not directory.exists() else "not a directory",
                mgspec.Location(str(directory)),
                hint="list --dir DIR names a folder of specs",
            )
        paths = sorted({*directory.glob("*.yaml"), *directory.glob("*.yml")})
        if pattern is not None:
            paths = [p for p in paths if fnmatch.fnmatchcase(p.stem, pattern)]
        shown = [str(path) for path in paths]
    columns = ("spec", "name") if directory is not None else ("name",)  # a built-in model's name is its spec's
    table = Table(*columns, "family", "weights", "description")
    invalid: list[mgspec.SpecError] = []
    for path, label in zip(paths, shown, strict=True):
        if not path.is_file():  # a FIFO or device named *.yaml is never opened (it could block forever)
            exc = mgspec.SpecError("not a regular file", mgspec.Location(str(path)))
            invalid.append(exc)
            table.add_row(str(path), "", "invalid", "", f"[red]{escape(str(exc))}[/red]")
            continue
        try:  # one bad file is a row of the table (and an error below); the others are still listed
            spec, _ = mgspec.load_spec(path)
            counts = mgspec.count_spec(spec)
        except mgspec.SpecError as exc:
            invalid.append(exc)
            table.add_row(label, *[""] * (len(columns) - 1), "invalid", "", f"[red]{escape(str(exc))}[/red]")
            continue
        named = (label, counts.name) if directory is not None else (label,)
        table.add_row(*named, counts.family, f"{counts.total:,}", escape(spec.description))
    render.console().print(table)
    for exc in invalid:
        report(str(exc))
    if not paths:
        where = directory if directory is not None else "the built-in models"
        print(f"no specs (*.yaml, *.yml){f' matching {pattern!r}' if pattern else ''} in {where}", file=sys.stderr)
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
        typer.Option(
            help="Take the weights from this run directory, checkpoint or model.safetensors; default: random init."
        ),
    ] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Any batch size (default: fixed).")] = False,
    batch_size: Annotated[int, typer.Option(help="The fixed batch size, and the checks' batch.", min=1)] = 1,
    opset: Annotated[int, typer.Option(help="ONNX opset to write.", min=7)] = 18,
    embed_normalization: Annotated[
        bool,
        typer.Option(
            "--embed-normalization",
            help="Normalise inside the graph: it takes raw RGB in [0, 255] (float, NCHW); metadata input=raw_0_255.",
        ),
    ] = False,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Dataset for the metadata's class names, mean and std (default: the run's, else the spec's fit).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Export for inference (eval mode, BatchNorm folded) as ONNX with metadata, checked against PyTorch first."""
    from mgspec import deploy

    report = deploy.export_spec(
        spec_input(spec),
        onnx,
        set_,
        run=run,
        dataset=dataset,
        opset=opset,
        dynamic_batch=dynamic_batch,
        batch=batch_size,
        embed_normalization=embed_normalization,
        where=str(spec),
    )
    checked = (
        f"matches PyTorch on random inputs in ONNX Runtime (max abs error {report.max_error:.2g})"
        if report.max_error is not None
        else "passes onnx.checker; install onnxruntime to also compare it with PyTorch"
    )
    batch = "dynamic batch" if dynamic_batch else f"batch {batch_size}"
    print(f"wrote {onnx} (opset {report.opset}, {batch}, {report.folded} BatchNorms folded); {checked}")
