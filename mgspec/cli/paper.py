"""The paper's experiments: paper, reproduce.

(No ``from __future__ import annotations`` here: typer evaluates the annotations.)
"""

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
from mgspec.cli.study import (
    ExecutorOpt,
    JobsOpt,
    RetryFailedOpt,
    SlurmGpusOpt,
    SlurmPartitionOpt,
    SlurmTimeOpt,
    StorageOpt,
    TensorboardOpt,
    TrialThreadsOpt,
    _log,
    exit_status,
)

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
    jobs: JobsOpt = None,
    executor: ExecutorOpt = "local",
    storage: StorageOpt = None,
    threads: TrialThreadsOpt = None,
    slurm_partition: SlurmPartitionOpt = None,
    slurm_time: SlurmTimeOpt = None,
    slurm_gpus: SlurmGpusOpt = None,
    tensorboard: TensorboardOpt = False,
    retry_failed: RetryFailedOpt = False,
    download: Annotated[bool, typer.Option("--download", help="Fetch the official archives (checksummed).")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Study directory (default: runs/paper/<table>-<row>).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train one row of the paper's tables with the paper's recipe and compare with its published accuracy.

    The row is a one-point study in OUT (trials/<n>-seed<k>/ are its runs): --jobs trains seeds in
    parallel, and running the same command again trains only what is not finished.
    """
    from mgspec import paper as registry
    from mgspec.study.runner import Options

    row = registry.find(row_id)  # an unknown row stops here, before anything is written
    given = {"epochs": epochs, "batch_size": batch_size, "max_batches": max_batches, "workers": workers}
    given |= {"compile": compile_, "channels_last": channels_last}
    options = Options(
        jobs, executor, storage, data_dir, device or "auto", threads,
        slurm_partition, slurm_time, slurm_gpus, tensorboard, retry_failed,
    )  # fmt: skip
    _reproduce(row, {k: v for k, v in given.items() if v is not None}, seeds, seed or 0, options, download, out, quiet)


def _reproduce(row, train: dict, seeds: int, seed: int, options, download: bool, out, quiet: bool) -> None:
    import re

    from mgspec import paper as registry
    from mgspec.study import frontends
    from mgspec.train.data import dataset_info
    from mgspec.train.download import download as fetch
    from mgspec.train.recipe import fit_spec, recipe

    recipe(row.dataset, options.data_dir, **{**dict(row.recipe), **train, "seed": seed})  # located option errors
    if download:
        fetch(row.dataset, options.data_dir)
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
    _, _, adapted = fit_spec(row.spec_path, list(row.overrides), dataset_info(row.dataset))
    if adapted:
        print(f"fitted to {row.dataset}: --set " + " --set ".join(adapted))
    result, aggregate = frontends.reproduce(
        row, directory, seeds=seeds, seed=seed, train=train, experiment=experiment, options=options,
        log=(lambda m: None) if quiet else _log,
    )  # fmt: skip
    if aggregate is not None:
        render.seeds_summary(aggregate, directory, render.console(), runs="trials/*")
        best, train_acc = aggregate["best_test_acc"], aggregate["final_train_acc"]
        spread = "" if best["std"] is None else f" ({100 * best['std']:.2f})"  # one seed: no spread
        ours = f"{100 * best['mean']:.2f}{spread}% test, {100 * train_acc['mean']:.2f}% train"
        done = len(aggregate["seeds"])
        epochs = aggregate["epochs"]
        plural = {n: "" if n == 1 else "s" for n in (epochs, done)}
        print(f"ours ({epochs} epoch{plural[epochs]}, {done} seed{plural[done]}): {ours}")
    p = row.published
    print(f"paper: {p.test:.2f} ({p.std:.2f})% test, {registry.percent(p.train)}% train")
    raise typer.Exit(exit_status(result.code, result.report))
