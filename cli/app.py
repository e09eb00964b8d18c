"""The ``mgspec`` command: each command parses options and hands off to the library."""

from __future__ import annotations

import dataclasses
import json
import os
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


DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="cifar10, cifar100, fashionmnist or mnist.")]
DataDirOpt = Annotated[Path, typer.Option("--data-dir", help="Directory with the dataset in its official format.")]


def _train_options(
    dataset: str,
    data_dir: Path,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    weight_decay: float | None,
    seed: int | None,
    device: str | None,
    workers: int | None,
    compile_: bool | None,
    channels_last: bool | None,
):
    from mgspec.train import recipe

    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "seed": seed,
        "device": device,
        "workers": workers,
        "compile": compile_,
        "channels_last": channels_last,
    }
    return recipe(dataset, data_dir, **given), [k for k, v in given.items() if v is not None]


EpochsOpt = Annotated[int | None, typer.Option(help="Total epochs (default: 400; 100 for (Fashion)MNIST).", min=1)]
BatchOpt = Annotated[int | None, typer.Option(help="Batch size over all processes (default: 128).", min=1)]
LrOpt = Annotated[float | None, typer.Option(help="Initial learning rate (default: 0.05).")]
WdOpt = Annotated[float | None, typer.Option(help="SGD weight decay (default: 1e-4).")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed (model init, data order, augmentation) (default: 0).")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (default: cpu).")]
WorkersOpt = Annotated[int | None, typer.Option(help="Data loader worker processes (default: 0).", min=0)]
CompileOpt = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the model (default: on for CUDA and for CPU runs of 5,000 steps or more).",
        show_default=False,
    ),
]
ChannelsLastOpt = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--no-channels-last", help="channels_last memory format (default: on).", show_default=False
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command()
@user_errors
def train(
    spec: SpecArg,
    dataset: DatasetOpt,
    data_dir: DataDirOpt = Path("data"),
    set_: SetOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    weight_decay: WdOpt = None,
    seed: SeedOpt = None,
    seeds: Annotated[int, typer.Option(help="Train N seeds (seed, seed+1, ...) and report mean and std.", min=1)] = 1,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    compile_: CompileOpt = None,
    channels_last: ChannelsLastOpt = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch the official archives (checksummed).")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/<spec>-<dataset>).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue this run directory up to --epochs (the total).", show_default=False)
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a spec with the paper's recipe; metrics, checkpoints and a summary go to the run directory."""
    import torch.distributed as torch_dist

    from mgspec import train as training
    from mgspec.train.download import download as fetch

    config, explicit = _train_options(
        dataset, data_dir, epochs, batch_size, lr, weight_decay, seed, device, workers, compile_, channels_last
    )
    main_process = int(os.environ.get("RANK", "0")) == 0
    if download:
        if main_process:
            fetch(dataset, data_dir)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # the other ranks wait for rank 0's download
            training.trainer.init_distributed(config.device)
            torch_dist.barrier()
    training.data.check(dataset, data_dir)
    if resume is not None and out is not None and resume != out:
        raise mgspec.SpecError("--out and --resume name different runs", hint="--resume RUN alone continues RUN")
    spec_name = mgspec.load_spec(spec, set_ or [])[0].name
    directory = resume or out or Path("runs") / f"{spec_name}-{dataset}"
    summaries = []
    try:
        for s in range(config.seed, config.seed + seeds):
            run_dir = directory if seeds == 1 else directory / f"seed-{s}"
            run = training.prepare(
                spec,
                set_ or [],
                dataclasses.replace(config, seed=s),
                run_dir,
                resume=resume is not None,
                explicit=explicit,
            )
            if main_process and run.adapted:
                print(f"fitted to {dataset}: --set " + " --set ".join(run.adapted))
            summaries.append(training.train(run, progress=not quiet))
    except BaseException:
        training.trainer.finish_distributed(ok=False)
        raise
    training.trainer.finish_distributed()
    if not main_process:
        return
    if seeds == 1:
        render.train_summary(summaries[0], directory, Console())
        return
    result = training.aggregate(summaries)
    (directory / "summary.json").write_text(json.dumps({"runs": summaries, "aggregate": result}, indent=2) + "\n")
    render.seeds_summary(result, directory, Console())


@app.command()
@user_errors
def evaluate(
    spec: SpecArg,
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint.pt, a run directory or a state_dict file.")],
    dataset: DatasetOpt,
    data_dir: DataDirOpt = Path("data"),
    set_: SetOpt = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.", min=1)] = 256,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    split: Annotated[str, typer.Option(help="test or train.")] = "test",
    format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Test loss and accuracy of a trained checkpoint."""
    from mgspec.train import evaluate as run_evaluation

    if split not in ("test", "train"):
        raise mgspec.SpecError(f"unknown split {split!r}", hint="use test or train")
    if format not in ("text", "json"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use text or json")
    result = run_evaluation(
        spec, set_ or [], checkpoint, dataset, data_dir, batch_size=batch_size, device=device, split=split
    )
    if format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['spec']} on {dataset} {split} ({result['images']:,} images): "
            f"accuracy {100 * result['accuracy']:.2f}%, loss {result['loss']:.4f}"
        )


@app.command()
@user_errors
def sweep(
    spec: SpecArg,
    grid: Annotated[
        list[str], typer.Option("--grid", "-g", help="PATH=V1,V2,... to sweep; repeat for a product grid.")
    ],
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for sweep.csv, sweep.json, sweep.png.")] = Path(
        "sweep"
    ),
    train_: Annotated[
        bool, typer.Option("--train", help="Train every combination and plot weights vs accuracy.")
    ] = False,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="With --train: the dataset.")] = "cifar10",
    data_dir: DataDirOpt = Path("data"),
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    weight_decay: WdOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    compile_: CompileOpt = None,
    channels_last: ChannelsLastOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Weights and MACs (and accuracy with --train) for every combination of a grid, as CSV/JSON and a plot."""
    from mgspec import train as training
    from mgspec.train import sweep as sweeping

    parsed = [sweeping.parse_grid(g) for g in grid]
    trainer = None
    if train_:
        config, _ = _train_options(
            dataset, data_dir, epochs, batch_size, lr, weight_decay, seed, device, workers, compile_, channels_last
        )
        training.data.check(dataset, data_dir)  # fail before anything is trained

        def trainer(overrides: list[str], run_dir: Path) -> dict:
            run = training.prepare(
                spec, overrides, config, run_dir, resume=(run_dir / training.trainer.CHECKPOINT).exists()
            )
            return training.train(run, progress=not quiet)

    rows, written = sweeping.sweep(spec, set_ or [], parsed, out, trainer)
    render.sweep_table(rows, Console(width=160))
    for path in written:
        print(f"wrote {path}")


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


def main() -> None:
    app()
