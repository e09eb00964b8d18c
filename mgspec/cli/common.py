"""The typer application and the options that several commands share.

(No ``from __future__ import annotations`` here: typer evaluates the annotations.)
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

import mgspec
from mgspec import registry, run_options

app = typer.Typer(
    name="mgspec",
    help="Compile multigrid CNN specs (YAML) to PyTorch models, source code and exact counts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[
    Path,
    typer.Argument(help="Spec file (YAML) or built-in model name; - reads it from stdin.", show_default=False),
]
SpecsArg = Annotated[
    list[Path],
    typer.Argument(help="Spec files (YAML) or built-in model names; - reads one from stdin.", show_default=False),
]
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
    """A spec path as the library takes it: ``-`` is the spec text on stdin (read once per stdin);
    a built-in model's name is its file (a path that exists wins)."""
    if str(path) != "-":
        return registry.resolve(path)
    if not _stdin or _stdin[0][0] is not sys.stdin:
        _stdin[:] = [(sys.stdin, mgspec.parse_text(sys.stdin.read(), "<stdin>"))]
    return _stdin[0][1]


DatasetOpt = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help="cifar10, cifar100, fashionmnist or mnist (default with a run: the run's).",
        show_default=False,
    ),
]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Fetch the official archives (checksummed).")]
#: ``--data-dir`` of a command that can continue a run (train, evaluate), whose config knows it.
RunDataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Directory with the dataset in its official format (default: data, or the run's).",
        show_default=False,
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Directory with the dataset in its official format (default: data).", show_default=False
    ),
]


# The options' rules live in the library (mgspec.run_options); sweep takes them from here.
_train_options, _warn_if_oversubscribed = run_options.train_options, run_options.warn_if_oversubscribed


EpochsOpt = Annotated[int | None, typer.Option(help="Total epochs (default: 400; 100 for (Fashion)MNIST).", min=1)]
BatchOpt = Annotated[int | None, typer.Option(help="Batch size over all processes (default: 128).", min=1)]
LrOpt = Annotated[float | None, typer.Option(help="Initial learning rate (default: 0.05).")]
WdOpt = Annotated[float | None, typer.Option(help="SGD weight decay (default: 1e-4).")]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed (model init, data order, augmentation) (default: 0).")]
DeviceOpt = Annotated[
    str | None,
    typer.Option(help="auto, cpu, cuda or cuda:N; under torchrun cuda is each rank's LOCAL_RANK GPU (default: auto)."),
]
WorkersOpt = Annotated[int | None, typer.Option(help="Data loader worker processes (default: 0).", min=0)]
CompileOpt = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the model (default: on for CPU runs of 5,000 steps or more; off on CUDA).",
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
SyncBnOpt = Annotated[
    bool | None,
    typer.Option(
        "--sync-bn/--no-sync-bn",
        help="Under torchrun on CUDA, BatchNorm over the global batch (SyncBatchNorm) (default: off).",
        show_default=False,
    ),
]
CudaGraphsOpt = Annotated[
    bool | None,
    typer.Option(
        "--cuda-graphs/--no-cuda-graphs",
        help="Capture the training step in a CUDA graph (default: on for single-process CUDA runs without --compile).",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
