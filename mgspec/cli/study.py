"""``mgspec study run`` and ``mgspec study report``: sweeps, seeds and searches as Optuna studies.

(No ``from __future__ import annotations`` here: typer evaluates the annotations.)
"""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

import mgspec
from mgspec.cli.common import DataDirOpt, DownloadOpt, app
from mgspec.cli.errors import user_errors

study_app = typer.Typer(
    name="study",
    help="Sweeps, seeds and Pareto searches as Optuna studies, on this machine or a Slurm cluster.",
    no_args_is_help=True,
)
app.add_typer(study_app)

StudyArg = Annotated[Path, typer.Argument(metavar="STUDY.yaml", help="The study file.", show_default=False)]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="Optuna storage URL, e.g. postgresql://user@host/db (default: OUT/journal.log).", show_default=False
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Study directory: trials and journal (default: studies/<name>).", show_default=False
    ),
]


JobsOpt = Annotated[
    int | None, typer.Option("--jobs", "-j", help="Trainings at once (default 1; Slurm: array tasks).", min=1)
]
ExecutorOpt = Annotated[str, typer.Option(help="local (processes here) or slurm (a job array via submitit).")]
StudyDeviceOpt = Annotated[
    str, typer.Option(help="auto (CUDA where available), cpu, cuda (one trial per GPU) or cuda:N.")
]
TrialThreadsOpt = Annotated[
    int | None, typer.Option(help="Torch threads per trial (default: the cores / --jobs).", min=1)
]
SlurmPartitionOpt = Annotated[str | None, typer.Option(help="Slurm partition (default: the study file's).")]
SlurmTimeOpt = Annotated[
    int | None, typer.Option(help="Minutes per Slurm job (default: the study file's, or 60).", min=1)
]
SlurmGpusOpt = Annotated[int | None, typer.Option(help="GPUs per Slurm job (default: the study file's, or 0).", min=0)]
TensorboardOpt = Annotated[bool, typer.Option("--tensorboard", help="TensorBoard event files in every run.")]
RetryFailedOpt = Annotated[
    bool, typer.Option("--retry-failed", help="Train failed trials again (a plain re-run leaves them failed).")
]


def _log(message: str) -> None:
    print(message, flush=True)


def exit_status(code: int, result: dict) -> int:
    """The exit status of a study run: interrupted (told how to continue), bad input, or 1 when a trial failed."""
    from mgspec.codegen.view import shell_word
    from mgspec.study import executors
    from mgspec.study import report as reporting

    if code == executors.INTERRUPTED:
        again = " ".join(["mgspec", *(shell_word(a) for a in sys.argv[1:])])
        print(f"interrupted: run the same command again to continue: {again}", file=sys.stderr)
        return executors.INTERRUPTED
    return 2 if code == 2 else max(code, reporting.status(result))


@study_app.command("run")
@user_errors
def run(
    study_file: StudyArg,
    jobs: JobsOpt = None,
    executor: ExecutorOpt = "local",
    storage: StorageOpt = None,
    out: OutOpt = None,
    data_dir: DataDirOpt = None,
    device: StudyDeviceOpt = "auto",
    threads: TrialThreadsOpt = None,
    slurm_partition: SlurmPartitionOpt = None,
    slurm_time: SlurmTimeOpt = None,
    slurm_gpus: SlurmGpusOpt = None,
    tensorboard: TensorboardOpt = False,
    retry_failed: RetryFailedOpt = False,
    download: DownloadOpt = False,
) -> None:
    """Create or continue a study: train every grid point and seed, or the trials of a search."""
    from mgspec.study import load_study
    from mgspec.study.runner import Options
    from mgspec.study.runner import run as run_study
    from mgspec.train.download import download as fetch

    if download:  # before the study is checked: its data is read then
        fetch(load_study(study_file).model.dataset, data_dir or Path("data"))

    options = Options(
        jobs, executor, storage, data_dir or Path("data"), device, threads,
        slurm_partition, slurm_time, slurm_gpus, tensorboard, retry_failed,
    )  # fmt: skip
    result, code, _ = run_study(study_file, out, options, _log)
    print_table(result)
    raise typer.Exit(exit_status(code, result))


def print_table(result: dict) -> None:
    front = set(result["pareto"])
    with_val = any(t.get("val_acc") is not None for t in result["trials"])
    val_head = f" {'val acc':>8}" if with_val else ""
    print(f"{'trial':>5}  {'state':<11} {'seed':>4} {'weights':>10} {'test acc':>8}{val_head}  params")
    for t in result["trials"]:
        acc = f"{100 * t['test_acc']:.2f}%" if t["test_acc"] is not None else "-"
        val_text = f"{100 * t['val_acc']:.2f}%" if t.get("val_acc") is not None else "-"
        val = f" {val_text:>8}" if with_val else ""
        weights = f"{t['weights']:,}" if t["weights"] is not None else "-"
        seed = "-" if t["seed"] is None else t["seed"]
        mark = " *" if t["number"] in front else ""
        setting = ", ".join(f"{k}={v}" for k, v in t["params"].items()) or "(the spec as written)"
        print(f"{t['number']:>5}  {t['state']:<11} {seed:>4} {weights:>10} {acc:>8}{val}  {setting}{mark}")
        if t["state"] in ("failed", "pruned") and t["reason"]:
            print(f"{'':>7}{t['reason'].splitlines()[0]}")
    for p in result["points"]:
        setting = ", ".join(f"{k}={v}" for k, v in p["params"].items()) or "(the spec as written)"
        n = len(p["seeds"])
        acc = f"{100 * p['acc_mean']:.2f}" + ("" if p["acc_std"] is None else f" ± {100 * p['acc_std']:.2f}")
        print(
            f"point {setting}: {p['weights']:,} weights, {p['macs']:,} MACs, "
            f"test accuracy {acc}% over {n} seed{'' if n == 1 else 's'}"
            + (f" (validation {100 * p['val_mean']:.2f}%)" if p.get("val_mean") is not None else "")
        )
    failed = [t["number"] for t in result["trials"] if t["state"] == "failed"]
    if failed:
        print(f"failed trials: {', '.join(map(str, failed))}")
    if front:
        chosen = " (accuracy: validation)" if with_val else ""
        print(f"Pareto front (*){chosen}: trials {', '.join(map(str, sorted(front)))}")


@study_app.command("report")
@user_errors
def report(
    target: Annotated[Path, typer.Argument(metavar="STUDY.yaml|DIR", help="The study file, or its directory.")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    plot: Annotated[
        Path | None, typer.Option(help="Also draw accuracy against weights (with the Pareto front) to FILE.png.")
    ] = None,
    storage: StorageOpt = None,
    out: OutOpt = None,
) -> None:
    """Per point the mean and std over seeds of test accuracy, weights and MACs; the Pareto front."""
    from mgspec.study import load_study, require
    from mgspec.study import report as reporting
    from mgspec.study import storage as stores

    require("optuna")
    if format not in ("table", "json", "csv"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use table, json or csv")
    if plot is not None:
        reporting.check_plot_target(plot)
    name = None
    if target.is_dir():
        directory = target
    else:
        study = load_study(target)
        name, directory = study.name, out or stores.default_out(target, study.name)
    if storage is None and not (directory / "journal.log").is_file():
        raise mgspec.SpecError(
            "no journal.log: the study has not run here",
            mgspec.Location(str(directory)),
            hint="give --out or --storage",
        )
    name, objectives, handle = reporting.load(name, stores.open_storage(storage, directory, parallel=False), directory)
    result = reporting.build(name, objectives, handle, directory)
    if format == "json":
        print(json.dumps(result, indent=2))
    elif format == "csv":
        print(reporting.csv_text(result), end="")
    else:
        print_table(result)
    if plot is not None:
        print(f"wrote {reporting.plot(result, plot)}", file=sys.stderr if format != "table" else sys.stdout)
