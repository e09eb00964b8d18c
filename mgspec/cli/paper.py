"""The paper's experiments: paper, reproduce.

(No ``from __future__ import annotations`` here: typer evaluates the annotations.)
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

import mgspec
from mgspec.cli import render
from mgspec.cli.common import (
    BatchOpt,
    ChannelsLastOpt,
    CompileOpt,
    DataDirOpt,
    DeviceOpt,
    EpochsOpt,
    QuietOpt,
    SeedOpt,
    WorkersOpt,
    app,
)
from mgspec.cli.errors import user_errors

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
    results: Annotated[
        Path | None,
        typer.Option(help="Our accuracy (mean ± std over seeds) from a study directory, e.g. of mgspec reproduce."),
    ] = None,
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
    selected, ours = registry.selection(table, results)
    if format == "json":
        print(registry.to_json(selected, ours), end="")
        return
    if format == "csv":
        print(registry.to_csv(selected, ours), end="")
        return
    render.paper_tables(selected, ours, render.console())
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
    from mgspec.train import launch
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
    sets = "".join(f" --set {o}" for o in row.overrides)
    print(f"  = mgspec train {record['spec']} -d {row.dataset}{sets} --val-split 0")
    print("  the paper's protocol: trains on every training image (no validation split), reports the test accuracy")

    def started(run) -> None:
        if run.adapted:
            print(f"fitted to {row.dataset}: --set " + " --set ".join(run.adapted))

    try:
        outcome = launch.train_seeds(
            row.spec_path,
            list(row.overrides),
            config,
            directory,
            seeds=seeds,
            explicit=explicit,
            experiment=experiment,
            progress=not quiet,
            started=started,
        )
    except launch.Interrupted as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        raise typer.Exit(exc.status) from None
    console = render.console()
    if outcome.aggregate is None:
        summary = outcome.summaries[0]
        render.train_summary(summary, directory, console)
        ours = f"{100 * summary['best_test_acc']:.2f}% test, {100 * summary['final_train_acc']:.2f}% train"
    else:
        result = outcome.aggregate
        render.seeds_summary(result, directory, console)
        best, train_acc = result["best_test_acc"], result["final_train_acc"]
        ours = f"{100 * best['mean']:.2f} ({100 * best['std']:.2f})% test, {100 * train_acc['mean']:.2f}% train"
    p = row.published
    plural = {n: "" if n == 1 else "s" for n in (config.epochs, seeds)}
    print(f"ours ({config.epochs} epoch{plural[config.epochs]}, {seeds} seed{plural[seeds]}): {ours}")
    print(f"paper: {p.test:.2f} ({p.std:.2f})% test, {registry.percent(p.train)}% train")
