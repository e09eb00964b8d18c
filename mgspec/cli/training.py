"""Commands on runs: train, evaluate, sweep.

(No ``from __future__ import annotations`` here: typer evaluates the annotations.)
"""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

import mgspec
from mgspec.cli import render
from mgspec.cli.common import (
    AmpDtypeOpt,
    AmpOpt,
    BatchOpt,
    ChannelsLastOpt,
    CompileOpt,
    CudaGraphsOpt,
    DataDirOpt,
    DatasetOpt,
    DeviceOpt,
    DownloadOpt,
    EpochsOpt,
    KernelsOpt,
    LrOpt,
    QuietOpt,
    RunDataDirOpt,
    SeedOpt,
    SetOpt,
    SpecArg,
    SyncBnOpt,
    ThreadsOpt,
    WdOpt,
    WorkersOpt,
    _train_options,
    app,
    spec_input,
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
    _log,
    exit_status,
)
from mgspec.errors import Location
from mgspec.run_options import DEFAULT_VAL_SPLIT

TrainSpecArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="SPEC",
        help="Spec file (YAML); - reads stdin. Optional with --resume: the run's.",
        show_default=False,
    ),
]
SeedsOpt = Annotated[
    int | None,
    typer.Option(
        help="Train N seeds (seed, seed+1, ...) and report mean and std (default: 1, or the run's).",
        min=1,
        show_default=False,
    ),
]
ValSplitOpt = Annotated[
    float | None,
    typer.Option(
        "--val-split",
        help="Fraction of each class held out to pick the best epoch (default: 0.1, or the run's; "
        "0: the paper's protocol, no split).",
        show_default=False,
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/<spec>-<dataset>).")]
ResumeOpt = Annotated[
    Path | None,
    typer.Option(
        help="Continue this run directory up to --epochs (the total); spec and --set come from it.",
        show_default=False,
    ),
]


@app.command()
@user_errors
def train(
    spec: TrainSpecArg = None,
    dataset: DatasetOpt = None,
    data_dir: RunDataDirOpt = None,
    set_: SetOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    weight_decay: WdOpt = None,
    seed: SeedOpt = None,
    seeds: SeedsOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    compile_: CompileOpt = None,
    channels_last: ChannelsLastOpt = None,
    threads: ThreadsOpt = None,
    amp: AmpOpt = None,
    amp_dtype: AmpDtypeOpt = None,
    sync_bn: SyncBnOpt = None,
    cuda_graphs: CudaGraphsOpt = None,
    kernels: KernelsOpt = True,
    val_split: ValSplitOpt = None,
    download: DownloadOpt = False,
    out: OutOpt = None,
    resume: ResumeOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a spec with the paper's recipe; metrics, checkpoints and a summary go to the run directory."""
    from mgspec.train import launch, start

    options = start.TrainOptions(
        spec, dataset, data_dir, set_, epochs, batch_size, lr, weight_decay, seed, seeds, device, workers, compile_,
        channels_last, threads, amp, amp_dtype, sync_bn, cuda_graphs, kernels, val_split, download, out, resume, quiet,
    )  # fmt: skip
    try:
        outcome = start.train_from_options(options, open_spec=spec_input)
    except launch.Interrupted as exc:
        for line in exc.lines:
            print(("\n" if line.startswith("interrupted") else "") + line, file=sys.stderr)
        raise typer.Exit(exc.status) from None
    if outcome is None:  # not the main process
        return
    if outcome.aggregate is None:
        render.train_summary(outcome.summaries[0], outcome.directory, render.console())
    else:
        render.seeds_summary(outcome.aggregate, outcome.directory, render.console())


RunOrSpecArg = Annotated[
    Path,
    typer.Argument(
        metavar="RUN_OR_SPEC",
        help="A run directory (its config.json names the spec, --set options and dataset), a "
        "model.safetensors file (its metadata does), or a spec followed by CHECKPOINT.",
        show_default=False,
    ),
]
CheckpointArg = Annotated[
    Path | None,
    typer.Argument(
        metavar="[CHECKPOINT]",
        help="After a spec: a checkpoint.pt, model.safetensors, run directory or state_dict file.",
        show_default=False,
    ),
]


@app.command()
@user_errors
def evaluate(
    spec_or_run: RunOrSpecArg,
    checkpoint: CheckpointArg = None,
    dataset: DatasetOpt = None,
    data_dir: RunDataDirOpt = None,
    set_: SetOpt = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.", min=1)] = 256,
    device: Annotated[str, typer.Option(help="auto (CUDA where there is one), cpu, cuda or cuda:N.")] = "auto",
    threads: ThreadsOpt = None,
    split: Annotated[str, typer.Option(help="test or train.")] = "test",
    format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Test loss and accuracy of a trained run or checkpoint."""
    from mgspec.train import start

    if split not in ("test", "train"):
        raise mgspec.SpecError(f"unknown split {split!r}", hint="use test or train")
    if format not in ("text", "json"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use text or json")
    result = start.evaluate_target(
        spec_or_run, checkpoint, dataset=dataset, data_dir=data_dir, set_=set_, batch_size=batch_size,
        device=device, threads=threads, split=split, open_spec=spec_input,
    )  # fmt: skip
    if format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['spec']} on {result['dataset']} {split} ({result['images']:,} images): "
            f"accuracy {100 * result['accuracy']:.2f}%, loss {result['loss']:.4f}"
        )


GridOpt = Annotated[
    list[str] | None,
    typer.Option("--grid", "-g", help="PATH=V1,V2,... to sweep; repeat for a product grid; PATH levels: N levels."),
]
ZipOpt = Annotated[
    list[str] | None,
    typer.Option("--zip", "-z", help="PATH=V1,V2,...; all --zip lists are taken side by side (one axis)."),
]
SweepOutOpt = Annotated[
    Path, typer.Option("--out", "-o", help="Directory for sweep.csv, sweep.json, sweep.png (and the study).")
]
SweepTrainOpt = Annotated[
    bool,
    typer.Option("--train", help="Train every combination (a study: see mgspec study) and plot weights vs accuracy."),
]
SeedsOpt = Annotated[
    int, typer.Option(help="With --train: seeds per combination (seed, seed+1, ...); mean ± std.", min=1)
]
SweepNameOpt = Annotated[
    str | None,
    typer.Option(
        help="With --train: the study's name in its storage (default: sweep-<spec file stem>); "
        "name each sweep of one spec when they share a --storage.",
        show_default=False,
    ),
]
SweepDatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="With --train: the dataset.")]
SweepValSplitOpt = Annotated[
    float | None,
    typer.Option(
        "--val-split",
        help=f"With --train: fraction of each class held out to pick each run's best epoch "
        f"(default: {DEFAULT_VAL_SPLIT}; 0: none).",
        show_default=False,
    ),
]


@app.command()
@user_errors
def sweep(
    ctx: typer.Context,
    spec: SpecArg,
    grid: GridOpt = None,
    zip_: ZipOpt = None,
    set_: SetOpt = None,
    out: SweepOutOpt = Path("sweep"),
    train_: SweepTrainOpt = False,
    seeds: SeedsOpt = 1,
    dataset: SweepDatasetOpt = "cifar10",
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    weight_decay: WdOpt = None,
    val_split: SweepValSplitOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    compile_: CompileOpt = None,
    channels_last: ChannelsLastOpt = None,
    threads: ThreadsOpt = None,
    amp: AmpOpt = None,
    amp_dtype: AmpDtypeOpt = None,
    jobs: JobsOpt = None,
    executor: ExecutorOpt = "local",
    storage: StorageOpt = None,
    slurm_partition: SlurmPartitionOpt = None,
    slurm_time: SlurmTimeOpt = None,
    slurm_gpus: SlurmGpusOpt = None,
    tensorboard: TensorboardOpt = False,
    retry_failed: RetryFailedOpt = False,
    name: SweepNameOpt = None,
    download: DownloadOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Weights and MACs (and accuracy with --train) for every combination of a grid, as CSV/JSON and a plot.

    With --train the sweep is a study in OUT (study.yaml, journal.log, trials/): running the same
    command again trains only what is not finished; a failed combination is reported (exit 1)
    and the others finish.
    """
    from mgspec.study.runner import Options
    from mgspec.train import sweep as sweeping

    if not grid and not zip_:
        raise mgspec.SpecError("nothing to sweep", hint="add --grid PATH=V1,V2,... or --zip PATH=V1,V2,...")
    parsed = [sweeping.parse_grid(g) for g in grid or ()]
    zipped = [sweeping.parse_grid(z) for z in zip_ or ()]
    source = spec_input(spec)
    if not train_:
        _refuse_train_only(ctx)
        return _print_sweep(*sweeping.sweep(source, set_ or [], parsed, out, zipped=zipped))
    data_dir = data_dir or Path("data")
    if download:
        from mgspec.train.download import download as fetch

        fetch(dataset, data_dir)
    given = (epochs, batch_size, lr, weight_decay, seed, device, workers, compile_, channels_last, threads, amp)
    config, explicit = _train_options(dataset, data_dir, *given, amp_dtype, val_split=val_split)  # located errors
    options = Options(
        jobs, executor, storage, data_dir, device or "auto", threads,
        slurm_partition, slurm_time, slurm_gpus, tensorboard, retry_failed,
    )  # fmt: skip
    train = {k: getattr(config, k) for k in explicit if k in SWEEP_TRAIN}
    _trained_sweep(source, set_ or [], parsed, zipped, out, dataset, train, seeds, config.seed, options, name, quiet)


#: The options of ``sweep`` that count without --train (every other one trains or runs the study).
COUNTING = ("spec", "grid", "zip_", "set_", "out", "train_", "quiet")


def _refuse_train_only(ctx: typer.Context) -> None:
    """An option of a trained sweep given without --train is refused, not ignored (``--epochs 5`` counts nothing)."""
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.name not in COUNTING and source is not None and source.name == "COMMANDLINE":
            option = "/".join([max(param.opts, key=len), *param.secondary_opts])
            raise mgspec.SpecError(
                "an option of a trained sweep: it does nothing without --train",
                Location(option),
                hint="add --train to train every combination, or leave the option out to count",
            )


def _print_sweep(rows: list[dict], written: list[Path]) -> None:
    render.sweep_table(rows, render.console())
    for path in written:
        print(f"wrote {path}")


#: The options of ``sweep --train`` that are the trials' training options (the rest say how the study runs).
SWEEP_TRAIN = ("epochs", "batch_size", "lr", "weight_decay", "workers", "compile", "channels_last", "amp", "val_split")


def _trained_sweep(source, sets, parsed, zipped, out, dataset, train, seeds, seed, options, name, quiet) -> None:
    from mgspec.study import frontends

    rows, written, result = frontends.sweep(
        source, sets, parsed, out, zipped=zipped, dataset=dataset, train={"val_split": DEFAULT_VAL_SPLIT, **train},
        seeds=seeds, seed=seed, name=name, options=options, log=(lambda m: None) if quiet else _log,
    )  # fmt: skip
    _print_sweep(rows, written)
    for t in result.report["trials"]:
        if t["state"] not in ("complete", "pruned"):
            setting = ", ".join(f"{k}={v}" for k, v in t["params"].items())
            if t["state"] == "failed":
                print(
                    f"failed: {setting} (seed {t['seed']}): {(t['reason'] or 'failed').splitlines()[0]}",
                    file=sys.stderr,
                )
            else:  # interrupted, or never started: the same command continues it
                print(f"{t['state']}: {setting} (seed {t['seed']})", file=sys.stderr)
    raise typer.Exit(exit_status(result.code, result.report))
