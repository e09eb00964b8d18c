"""``mgspec predict``: the top classes of image files, from a run, its safetensors file or an ONNX export.

(No ``from __future__ import annotations`` here: typer evaluates the annotations.)
"""

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

import mgspec
from mgspec.cli import render
from mgspec.cli.common import app
from mgspec.cli.errors import report, user_errors

#: Exit status when some image files could not be classified (the others were).
SOME_FAILED = 1


@app.command()
@user_errors
def predict(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="RUN|WEIGHTS.safetensors|MODEL.onnx",
            help="A run directory, a .safetensors file written by mgspec, or an ONNX file from mgspec export.",
            show_default=False,
        ),
    ],
    images: Annotated[
        list[Path],
        typer.Argument(help="Image files (PNG, JPEG) or directories of them.", show_default=False),
    ],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Classes shown per image, most probable first.")] = 1,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
) -> None:
    """Classify image files: resized and center-cropped to the model's input, its top classes with probabilities."""
    from mgspec import predict as predicting

    if format not in ("table", "json", "csv"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use table, json or csv")
    predicting._pillow()  # the missing extra before the model is loaded
    predictor = predicting.load_predictor(model)
    results = []
    for result in predicting.predict(predictor, images, top_k):
        if result.error is not None:
            report(result.error)
        results.append(result)
    _show(results, format, top_k)
    if any(r.error is not None for r in results):
        raise typer.Exit(SOME_FAILED)


def _show(results, format: str, k: int) -> None:
    if format == "json":
        rows = [
            {"file": r.file, "error": r.error}
            if r.error is not None
            else {"file": r.file, "top": [{"index": i, "class": n, "probability": p} for i, n, p in r.top]}
            for r in results
        ]
        print(json.dumps(rows, indent=2))
    elif format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file", "rank", "index", "class", "probability"])
        for r in results:
            for rank, (i, n, p) in enumerate(r.top, 1):
                writer.writerow([r.file, rank, i, n, f"{p:.6f}"])
    else:
        from rich.table import Table

        table = Table()
        table.add_column("file")
        for rank in range(1, k + 1):
            table.add_column("class" if k == 1 else f"#{rank}")
        for r in results:
            if r.error is None:
                table.add_row(r.file, *(f"{n} {100 * p:.1f}%" for _, n, p in r.top))
        render.console().print(table)
