"""What the options of the commands on runs mean: a recipe from the options given, and the spec of a run.

``train``, ``evaluate``, ``sweep`` and ``reproduce`` share these rules; they live outside the CLI
so that the library functions behind the commands (:mod:`mgspec.train.start`) follow them too.
Importing this module needs no torch (the CLI imports it at startup).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import mgspec
from mgspec import registry

#: The fraction of each class a new ``mgspec train`` run, training sweep or study trial holds out
#: for model selection unless told otherwise (a resumed run keeps its own; the library's
#: TrainConfig keeps 0, the paper's protocol, so old runs read back unchanged).
DEFAULT_VAL_SPLIT = 0.1


def train_options(
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
    sync_bn: bool | None = None,
    cuda_graphs: bool | None = None,
    val_split: float | None = None,
):
    """``(the recipe, the names of the options given)``: the paper's recipe with the given options
    (None: not given) in place of its defaults; ``--amp-dtype`` implies ``--amp``."""
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
        "sync_bn": sync_bn,
        "cuda_graphs": cuda_graphs,
        "val_split": val_split,
    }
    config = recipe(dataset, data_dir, **given)
    return config, [k for k, v in given.items() if v is not None]


def warn_if_oversubscribed(threads: int, device: str = "cpu") -> None:
    """Warn when the CPU threads would share busy cores (not for CUDA runs: there the GPU does the work)."""
    from mgspec.train.recipe import available_cores, oversubscription

    if device != "cpu":
        return
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return
    if message := oversubscription(threads, available_cores(), load):
        print(f"warning: {message}", file=sys.stderr)


def need(value, option: str, why: str):
    """``value``, which an option must give (a SpecError naming the option when it is None)."""
    if value is None:
        raise mgspec.SpecError(f"{option} is required {why}")
    return value


def spec_of_run(
    run: dict | None,
    spec: Path | None,
    set_: list[str] | None,
    where: Path,
    open_spec: Callable[[Path], object] = registry.resolve,
):
    """The spec and overrides to use with a run: the run's own, unless given again.

    A given spec (opened with ``open_spec``: the CLI reads ``-`` from stdin) replaces the stored
    text; given --set options come after the stored ones. Whether the result is the run's spec is
    checked against the resolved spec the run recorded (:func:`check_same_spec`).
    """
    if run is None:
        if spec is None:
            raise mgspec.SpecError(
                "not a run directory (no config.json), so the spec is not known",
                mgspec.Location(str(where)),
                hint=f"give the spec too: mgspec ... SPEC {where}",
            )
        return open_spec(spec), list(set_ or [])
    stored = run["spec"]["overrides"]
    source = mgspec.parse_text(run["spec"]["text"], run["spec"]["path"]) if spec is None else open_spec(spec)
    return source, [*stored, *(s for s in set_ or [] if s not in stored)]


def check_same_spec(run: dict, source, overrides: list[str], where: Path, what: str) -> None:
    """Refuse a spec and overrides that resolve to another spec than the one the run recorded."""
    resolved, _ = mgspec.load_spec(source, overrides)
    if resolved.model_dump(mode="json") != run["spec"]["resolved"]:
        raise mgspec.SpecError(
            f"{what}: the run was trained from a different spec ({run['spec']['path']} "
            f"with {run['spec']['overrides'] or 'no overrides'})",
            mgspec.Location(str(where)),
            hint="leave out the spec and --set options: the run's own are used",
        )
