"""The ``mgspec`` command: each command parses options and hands off to the library.

(No ``from __future__ import annotations`` here: typer would evaluate every string
annotation of every command at start-up.)
"""

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

OptimizeOpt = Annotated[
    bool,
    typer.Option(
        "--optimize/--no-optimize",
        help="Run the optimisation passes (fold zeros, CSE); --no-optimize gives the literal algorithm.",
    ),
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
    optimize: OptimizeOpt = True,
) -> None:
    """Exact weights and MACs per level and operator, from the graph alone, and what the passes removed."""
    if format not in ("table", "json", "csv"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use table, json or csv")
    counts = mgspec.count_spec(spec, set_, input_size, optimized=optimize)
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
    optimize: OptimizeOpt = True,
) -> None:
    """Generate standalone PyTorch source (one <name>.py per spec)."""
    from mgspec import codegen

    # Render everything first: one bad spec leaves no partial output behind.
    rendered: dict[Path, str] = {}
    for spec in specs:
        graph = mgspec.compile_graph(spec, set_, optimize)
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
def show(spec: SpecArg, set_: SetOpt = None, optimize: OptimizeOpt = True) -> None:
    """Print the graph IR readably: one op per line, grouped by level."""
    from mgspec import export

    print(export.to_text(mgspec.compile_graph(spec, set_, optimize)), end="")


@app.command()
@user_errors
def graph(
    spec: SpecArg,
    set_: SetOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="dot, mermaid or json (networkx node-link).")] = "dot",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here; .svg/.png render DOT with Graphviz.")
    ] = None,
    optimize: OptimizeOpt = True,
) -> None:
    """Export the graph IR: levels as clusters, the channel V-cycle nested, shared slots marked."""
    from mgspec import export

    renderers = {"dot": export.to_dot, "mermaid": export.to_mermaid, "json": export.to_json}
    if format not in renderers:
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use dot, mermaid or json")
    g = mgspec.compile_graph(spec, set_, optimize)
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


TableOpt = Annotated[str | None, typer.Option("--table", "-t", help="One table: I ... IX (or 1 ... 9).")]


@app.command()
@user_errors
def paper(
    table: TableOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    figure: Annotated[
        int | None, typer.Option(help="Draw a figure instead: 7 (accuracy against weights, from --sweep).")
    ] = None,
    sweep_dirs: Annotated[
        list[Path] | None,
        typer.Option("--sweep", help="With --figure 7: a trained sweep (its directory or sweep.json). Repeatable."),
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="With --figure 7: a legend name per --sweep.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="With --figure: the image to write.")] = Path("fig7.png"),
) -> None:
    """The paper's experiments (Tables I-IX): printed weight counts beside ours, published accuracies."""
    from mgspec import paper as registry

    if figure is not None:
        if figure != 7:
            raise mgspec.SpecError(f"no figure {figure}", hint="mgspec redraws Figure 7 (--figure 7 --sweep DIR)")
        if not sweep_dirs:
            raise mgspec.SpecError("--figure 7 needs a trained sweep", hint="--sweep DIR from mgspec sweep --train")
        print(f"wrote {registry.figure7(sweep_dirs, out, label)}")
        return
    if format not in ("table", "json", "csv"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use table, json or csv")
    selected = registry.rows(table)
    if format == "json":
        print(registry.to_json(selected), end="")
        return
    if format == "csv":
        print(registry.to_csv(selected), end="")
        return
    from rich.table import Table

    console = Console(width=200)
    for name in registry.TABLES:
        members = [r for r in selected if r.table == name]
        if not members:
            continue
        grid = Table(title=f"Table {name}: {registry.TITLES[name]}", title_justify="left")
        for column in ("row", "model", "data", "paper (k)", "ours", "", "test (std)", "train"):
            grid.add_column(
                column, justify="right" if column in ("paper (k)", "ours", "test (std)", "train") else "left"
            )
        notes = []
        for row in members:
            status = "✓" if registry.matches(row) else "✗"
            if row.note:
                notes.append(f"  {row.id}: {row.note.kind}: {row.note.text}")
                status += f" {row.note.kind}"
            p = row.published
            grid.add_row(
                row.id, row.model, row.dataset, f"{row.printed_k:,}", f"{registry.count(row):,}", status,
                f"{p.test:.2f} ({p.std:.2f})", registry.percent(p.train),
            )  # fmt: skip
        console.print(grid)
        for line in notes:
            console.print(line, highlight=False)
    print("train a row with the paper's recipe: mgspec reproduce ROW --data-dir DIR [--seeds N]")


@app.command()
@user_errors
def reproduce(
    row_id: Annotated[
        str, typer.Argument(metavar="ROW", help="A row of the paper, e.g. II/cK=64,gs=4 (mgspec paper).")
    ],
    data_dir: DataDirOpt = Path("data"),
    seeds: Annotated[
        int, typer.Option(help="Train N seeds (seed, seed+1, ...); the paper reports mean ± std.", min=1)
    ] = 1,
    seed: SeedOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    max_batches: Annotated[
        int | None, typer.Option(help="Train on the first N batches of each epoch only (a smoke test).", min=1)
    ] = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    compile_: CompileOpt = None,
    channels_last: ChannelsLastOpt = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch the official archives (checksummed).")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/paper/<table>-<row>).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train one row of the paper's tables with the paper's recipe and compare with its published accuracy."""
    import re

    from mgspec import paper as registry

    row = registry.find(row_id)  # an unknown row stops here, before anything is written
    from mgspec import train as training
    from mgspec.train.download import download as fetch

    given = {
        **dict(row.recipe),
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "max_batches": max_batches,
        "device": device,
        "workers": workers,
        "compile": compile_,
        "channels_last": channels_last,
    }
    config = training.recipe(row.dataset, data_dir, **given)
    explicit = [k for k, v in given.items() if v is not None]
    if download:
        fetch(row.dataset, data_dir)
    training.data.check(row.dataset, data_dir)
    directory = out or Path("runs") / "paper" / re.sub(r"[^A-Za-z0-9_.=,-]+", "_", row.id.replace("/", "-"))
    record = registry.record(row)
    experiment = {
        "paper_row": row.id,
        "printed_k": row.printed_k,
        "published": {"test_acc": row.published.test, "test_std": row.published.std, "train_acc": row.published.train},
        "note": record["note"],
    }
    print(f"{row.id}: {row.model} on {row.dataset}, {registry.count(row):,} weights (paper: {row.printed_k:,}k)")
    print(f"  = mgspec train {record['spec']} -d {row.dataset}" + "".join(f" --set {o}" for o in row.overrides))
    summaries = []
    for s in range(config.seed, config.seed + seeds):
        run_dir = directory if seeds == 1 else directory / f"seed-{s}"
        run = training.prepare(
            row.spec_path,
            list(row.overrides),
            dataclasses.replace(config, seed=s),
            run_dir,
            explicit=explicit,
            experiment=experiment,
        )
        if run.adapted:
            print(f"fitted to {row.dataset}: --set " + " --set ".join(run.adapted))
        summaries.append(training.train(run, progress=not quiet))
    console = Console()
    if seeds == 1:
        render.train_summary(summaries[0], directory, console)
        ours = f"{100 * summaries[0]['best_test_acc']:.2f}% test, {100 * summaries[0]['final_train_acc']:.2f}% train"
    else:
        result = training.aggregate(summaries)
        payload = {"runs": summaries, "aggregate": result, "experiment": experiment}
        (directory / "summary.json").write_text(json.dumps(payload, indent=2) + "\n")
        render.seeds_summary(result, directory, console)
        best, train_acc = result["best_test_acc"], result["final_train_acc"]
        ours = f"{100 * best['mean']:.2f} ({100 * best['std']:.2f})% test, {100 * train_acc['mean']:.2f}% train"
    p = row.published
    plural = {n: "" if n == 1 else "s" for n in (config.epochs, seeds)}
    print(f"ours ({config.epochs} epoch{plural[config.epochs]}, {seeds} seed{plural[seeds]}): {ours}")
    print(f"paper: {p.test:.2f} ({p.std:.2f})% test, {registry.percent(p.train)}% train")


def main() -> None:
    app()
