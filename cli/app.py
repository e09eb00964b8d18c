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
from mgspec.cli.errors import USER_ERROR, report, user_errors
from rich.markup import escape

import mgspec

app = typer.Typer(
    name="mgspec",
    help="Compile multigrid CNN specs (YAML) to PyTorch models, source code and exact counts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[Path, typer.Argument(help="Spec file (YAML); - reads it from stdin.", show_default=False)]
SpecsArg = Annotated[list[Path], typer.Argument(help="Spec files (YAML); - reads one from stdin.", show_default=False)]
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

_stdin: list[tuple[object, mgspec.Source]] = []  # (the stdin read, its spec)


def spec_input(path: Path) -> Path | mgspec.Source:
    """A spec path as the library takes it: ``-`` is the spec text on stdin (read once per stdin)."""
    if str(path) != "-":
        return path
    if not _stdin or _stdin[0][0] is not sys.stdin:
        _stdin[:] = [(sys.stdin, mgspec.parse_text(sys.stdin.read(), "<stdin>"))]
    return _stdin[0][1]


def _set_options(set_: list[str] | None) -> str:
    import shlex

    return "".join(f" --set {shlex.quote(s)}" for s in set_ or ())


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
    from mgspec import export

    print(export.to_text(mgspec.compile_graph(spec_input(spec), set_, optimize)), end="")


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
    from mgspec import export

    renderers = {"dot": export.to_dot, "mermaid": export.to_mermaid, "json": export.to_json}
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


DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help="cifar10, cifar100, fashionmnist or mnist (default with a run: the run's).",
        show_default=False,
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Directory with the dataset in its official format (default: data, or the run's).",
        show_default=False,
    ),
]


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
    threads: int | None = None,
    amp: bool | None = None,
    amp_dtype: str | None = None,
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
        "threads": threads,
        "amp": (amp_dtype or True) if amp or (amp is None and amp_dtype) else (False if amp is False else None),
    }
    config = recipe(dataset, data_dir, **given)
    return config, [k for k, v in given.items() if v is not None]


def _warn_if_oversubscribed(threads: int) -> None:
    from mgspec.train.recipe import available_cores, oversubscription

    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return
    if message := oversubscription(threads, available_cores(), load):
        print(f"warning: {message}", file=sys.stderr)


def _need(value, option: str, why: str):
    if value is None:
        raise mgspec.SpecError(f"{option} is required {why}")
    return value


def _from_run(run: dict | None, spec: Path | None, set_: list[str] | None, where: Path):
    """The spec and overrides to use with a run: the run's own, unless given again.

    A given spec replaces the stored text; given --set options come after the stored ones. Whether
    the result is the run's spec is checked against the resolved spec the run recorded.
    """
    from mgspec.train import trainer

    if run is None:
        if spec is None:
            raise mgspec.SpecError(
                "not a run directory (no config.json), so the spec is not known",
                mgspec.Location(str(where)),
                hint=f"give the spec too: mgspec ... SPEC {where}",
            )
        return spec_input(spec), list(set_ or [])
    stored = run["spec"]["overrides"]
    source = trainer.stored_spec(run) if spec is None else spec_input(spec)
    return source, [*stored, *(s for s in set_ or [] if s not in stored)]


def _check_same_spec(run: dict, source, overrides: list[str], where: Path, what: str) -> None:
    resolved, _ = mgspec.load_spec(source, overrides)
    if resolved.model_dump(mode="json") != run["spec"]["resolved"]:
        raise mgspec.SpecError(
            f"{what}: the run was trained from a different spec ({run['spec']['path']} "
            f"with {run['spec']['overrides'] or 'no overrides'})",
            mgspec.Location(str(where)),
            hint="leave out the spec and --set options: the run's own are used",
        )


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
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="Torch threads (default: $OMP_NUM_THREADS, else the cores this process may use; never more).",
        min=1,
        show_default=False,
    ),
]
KernelsOpt = Annotated[
    bool,
    typer.Option(
        "--kernels/--no-kernels",
        help="On CPU, run grouped 3x3 convolutions on mgspec's kernel where it is faster (compiled on first use).",
    ),
]
AmpOpt = Annotated[
    bool | None,
    typer.Option(
        "--amp/--no-amp",
        help="Mixed precision: autocast to bf16 on CPU; bf16 on CUDA where supported, else fp16 with loss scaling.",
        show_default=False,
    ),
]
AmpDtypeOpt = Annotated[
    str | None,
    typer.Option(help="bf16 or fp16 (fp16 needs CUDA); implies --amp.", show_default=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command()
@user_errors
def train(
    spec: Annotated[
        Path | None,
        typer.Argument(
            metavar="SPEC",
            help="Spec file (YAML); - reads stdin. Optional with --resume: the run's.",
            show_default=False,
        ),
    ] = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    set_: SetOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    weight_decay: WdOpt = None,
    seed: SeedOpt = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            help="Train N seeds (seed, seed+1, ...) and report mean and std (default: 1, or the run's).",
            min=1,
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    compile_: CompileOpt = None,
    channels_last: ChannelsLastOpt = None,
    threads: ThreadsOpt = None,
    amp: AmpOpt = None,
    amp_dtype: AmpDtypeOpt = None,
    kernels: KernelsOpt = True,
    download: Annotated[bool, typer.Option("--download", help="Fetch the official archives (checksummed).")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/<spec>-<dataset>).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue this run directory up to --epochs (the total); spec and --set come from it.",
            show_default=False,
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a spec with the paper's recipe; metrics, checkpoints and a summary go to the run directory."""
    import re

    import torch.distributed as torch_dist

    from mgspec import kernels as cpu_kernels
    from mgspec import train as training

    cpu_kernels.set_enabled(kernels and cpu_kernels.enabled())  # same function either way; only the speed differs
    from mgspec.train.download import download as fetch

    trainer = training.trainer
    stored = None
    if resume is not None:
        if out is not None and resume != out:
            raise mgspec.SpecError("--out and --resume name different runs", hint="--resume RUN alone continues RUN")
        stored = trainer.read_run(resume)
        if stored is None:
            raise mgspec.SpecError(
                "not a run directory (no config.json)", mgspec.Location(str(resume)), hint="check --resume"
            )
        if dataset is not None and dataset != stored["config"]["dataset"]:
            raise mgspec.SpecError(
                f"--dataset {dataset}: the run trains on {stored['config']['dataset']}",
                mgspec.Location(str(resume)),
                hint="leave out --dataset: the run's own is used",
            )
        dataset = stored["config"]["dataset"]
        data_dir = data_dir or Path(stored["config"]["data_dir"])
        source, overrides = _from_run(stored, spec, set_, resume)
    else:
        dataset = _need(dataset, "--dataset", "(or --resume RUN, which knows it)")
        _need(spec, "SPEC", "(or --resume RUN, which knows it)")
        source, overrides = spec_input(spec), list(set_ or [])
    data_dir = data_dir or Path("data")
    config, explicit = _train_options(
        dataset,
        data_dir,
        epochs,
        batch_size,
        lr,
        weight_decay,
        seed,
        device,
        workers,
        compile_,
        channels_last,
        threads,
        amp,
        amp_dtype,
    )
    main_process = int(os.environ.get("RANK", "0")) == 0
    if download:
        if main_process:
            fetch(dataset, data_dir)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # the other ranks wait for rank 0's download
            training.trainer.init_distributed(config.device)
            torch_dist.barrier()
    training.data.check(dataset, data_dir)
    spec_name = mgspec.load_spec(source, overrides)[0].name
    directory = resume or out or Path("runs") / f"{spec_name}-{dataset}"
    if resume is not None:
        started = sorted(int(m.group(1)) for d in resume.glob("seed-*") if (m := re.fullmatch(r"seed-(\d+)", d.name)))
        if seeds is None and seed is None and started and not (resume / trainer.CONFIG).exists():
            seed, seeds = started[0], len(started)
        if seed is None:
            seed = stored["config"]["seed"]
    seeds = seeds or 1
    seed = config.seed if seed is None else seed
    run_dirs = {s: directory if seeds == 1 else directory / f"seed-{s}" for s in range(seed, seed + seeds)}
    # Resuming a run that has every epoch already is an error (checked in prepare, after the spec and recipe).
    nothing_left = resume is not None and all(
        trainer.finished_epochs(d) >= (epochs or stored["config"]["epochs"]) for d in run_dirs.values()
    )
    summaries = []
    current = None
    try:
        for i, (s, run_dir) in enumerate(run_dirs.items()):
            current = run_dir
            run = training.prepare(
                source,
                overrides,
                dataclasses.replace(config, seed=s),
                run_dir,
                resume=resume is not None and (run_dir / trainer.CONFIG).exists(),
                explicit=explicit,
                require_epochs_left=nothing_left,
            )
            if main_process and run.adapted:
                print(f"fitted to {dataset}: --set " + " --set ".join(run.adapted))
            if main_process and i == 0:  # once the run is known to start: user errors come first
                _warn_if_oversubscribed(config.threads)
            summaries.append(training.train(run, progress=not quiet))
    except KeyboardInterrupt:
        training.trainer.finish_distributed(ok=False)
        if main_process and current is not None and (current / trainer.CONFIG).exists():
            import shlex

            total = json.loads((current / trainer.CONFIG).read_text())["config"]["epochs"]
            where = f"{current} stopped after epoch {trainer.finished_epochs(current)} of {total}"
            command = f"mgspec train --resume {shlex.quote(str(directory))} --epochs {total}"
            if seeds > 1:
                command += f" --seed {seed} --seeds {seeds}"
            print(f"\ninterrupted: {where} (the checkpoint holds every finished epoch)", file=sys.stderr)
            print(f"resume with: {command}", file=sys.stderr)
        raise typer.Exit(130) from None
    except BaseException:
        training.trainer.finish_distributed(ok=False)
        raise
    training.trainer.finish_distributed()
    if not main_process:
        return
    if seeds == 1:
        render.train_summary(summaries[0], directory, render.console())
        return
    result = training.aggregate(summaries)
    (directory / "summary.json").write_text(json.dumps({"runs": summaries, "aggregate": result}, indent=2) + "\n")
    render.seeds_summary(result, directory, render.console())


@app.command()
@user_errors
def evaluate(
    spec_or_run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN_OR_SPEC",
            help="A run directory (its config.json names the spec, --set options and dataset), or a spec "
            "followed by CHECKPOINT.",
            show_default=False,
        ),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            metavar="[CHECKPOINT]",
            help="After a spec: a checkpoint.pt, run directory or state_dict file.",
            show_default=False,
        ),
    ] = None,
    dataset: DatasetOpt = None,
    data_dir: DataDirOpt = None,
    set_: SetOpt = None,
    batch_size: Annotated[int, typer.Option(help="Batch size.", min=1)] = 256,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    threads: ThreadsOpt = None,
    split: Annotated[str, typer.Option(help="test or train.")] = "test",
    format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Test loss and accuracy of a trained run or checkpoint."""
    from mgspec.train import evaluate as run_evaluation
    from mgspec.train import trainer
    from mgspec.train.recipe import available_cores, check_device, default_threads

    if split not in ("test", "train"):
        raise mgspec.SpecError(f"unknown split {split!r}", hint="use test or train")
    if format not in ("text", "json"):
        raise mgspec.SpecError(f"unknown format {format!r}", hint="use text or json")
    spec, target = (None, spec_or_run) if checkpoint is None else (spec_or_run, checkpoint)
    stored = trainer.read_run(target)
    source, overrides = _from_run(stored, spec, set_, target)
    if stored is not None:
        _check_same_spec(stored, source, overrides, target, "checkpoint does not fit the spec")
        dataset = dataset or stored["config"]["dataset"]
        data_dir = data_dir or Path(stored["config"]["data_dir"])
    dataset = _need(dataset, "--dataset", "for a checkpoint outside a run directory")
    threads = threads or default_threads()
    if threads > available_cores():
        raise mgspec.SpecError(f"--threads {threads}: this process may use {available_cores()} cores")
    check_device(device)  # user errors before the warning
    _warn_if_oversubscribed(threads)
    result = run_evaluation(
        source,
        overrides,
        target,
        dataset,
        data_dir or Path("data"),
        batch_size=batch_size,
        device=device,
        split=split,
        threads=threads,
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
        list[str] | None,
        typer.Option("--grid", "-g", help="PATH=V1,V2,... to sweep; repeat for a product grid; PATH levels: N levels."),
    ] = None,
    zip_: Annotated[
        list[str] | None,
        typer.Option("--zip", "-z", help="PATH=V1,V2,...; all --zip lists are taken side by side (one axis)."),
    ] = None,
    set_: SetOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for sweep.csv, sweep.json, sweep.png.")] = Path(
        "sweep"
    ),
    train_: Annotated[
        bool, typer.Option("--train", help="Train every combination and plot weights vs accuracy.")
    ] = False,
    seeds: Annotated[
        int, typer.Option(help="With --train: seeds per combination (seed, seed+1, ...); mean ± std.", min=1)
    ] = 1,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="With --train: the dataset.")] = "cifar10",
    data_dir: DataDirOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    weight_decay: WdOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    compile_: CompileOpt = None,
    channels_last: ChannelsLastOpt = None,
    threads: ThreadsOpt = None,
    amp: AmpOpt = None,
    amp_dtype: AmpDtypeOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Weights and MACs (and accuracy with --train) for every combination of a grid, as CSV/JSON and a plot."""
    from mgspec import train as training
    from mgspec.train import sweep as sweeping

    if not grid and not zip_:
        raise mgspec.SpecError("nothing to sweep", hint="add --grid PATH=V1,V2,... or --zip PATH=V1,V2,...")
    parsed = [sweeping.parse_grid(g) for g in grid or ()]
    zipped = [sweeping.parse_grid(z) for z in zip_ or ()]
    source = spec_input(spec)
    data_dir = data_dir or Path("data")
    trainer = None
    seed_list = [0]
    if train_:
        config, _ = _train_options(
            dataset,
            data_dir,
            epochs,
            batch_size,
            lr,
            weight_decay,
            seed,
            device,
            workers,
            compile_,
            channels_last,
            threads,
            amp,
            amp_dtype,
        )
        seed_list = list(range(config.seed, config.seed + seeds))
        training.data.check(dataset, data_dir)  # fail before anything is trained
        _warn_if_oversubscribed(config.threads)

        def trainer(spec_for_run, overrides: list[str], run_dir: Path, run_seed: int) -> dict:
            run = training.prepare(
                spec_for_run,
                overrides,
                dataclasses.replace(config, seed=run_seed),
                run_dir,
                resume=(run_dir / training.trainer.CONFIG).exists(),
            )
            return training.train(run, progress=not quiet)

    rows, written = sweeping.sweep(source, set_ or [], parsed, out, trainer, zipped=zipped, seeds=seed_list)
    render.sweep_table(rows, render.console())
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

    console = render.console()
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
    console = render.console()
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
