"""A run directory before training: created or reopened, and checked against the spec and recipe.

:func:`prepare` is the one place a run is refused before it starts: a spec or recipe that
differs from the run being resumed, a directory that is not fresh, a device that is not there or
a model whose weights cannot fit it. It returns a :class:`Run`, which :func:`mgspec.train.train`
trains; config.json is written only once training has built the model on its device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

import mgspec
from mgspec import runs
from mgspec.build import check_memory
from mgspec.errors import Location, SpecError
from mgspec.load import Source
from mgspec.schema import Spec
from mgspec.train import distributed
from mgspec.train.data import dataset_info
from mgspec.train.recipe import TrainConfig, check_device, fit_spec

CHECKPOINT = runs.CHECKPOINT

#: Bytes per weight while training: the weight, its gradient, SGD's momentum and one spare copy.
TRAINING_BYTES_PER_WEIGHT = 16


@dataclass
class Run:
    """A prepared run: where it lives, what it trains and how."""

    directory: Path
    config: TrainConfig
    spec_path: str | Path | Source  # a spec file, or its text (``-``, or the text a run stored)
    overrides: list[str]
    adapted: list[str] = field(default_factory=list)
    #: config.json's contents, written by :func:`train` once the model is built on its device.
    record: dict = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT


def _spec_record(spec_path: str | Path | Source, overrides: list[str], spec: Spec) -> dict:
    counts = mgspec.count_spec(spec)
    source = spec_path if isinstance(spec_path, Source) else None
    return {
        "path": source.name if source else str(spec_path),
        "text": source.text if source else Path(spec_path).read_text(),
        "overrides": overrides,
        "resolved": spec.model_dump(mode="json"),
        "weights": counts.total,
        "macs": counts.macs,
        "family": counts.family,
        "name": spec.name,
    }


def read_run(directory: str | Path) -> dict | None:
    """The validated ``config.json`` of a run directory (or of its first ``seed-*`` run), else None."""
    return runs.find_config(directory)


def stored_spec(run: dict) -> Source:
    """The spec a run was trained from, as its config.json holds it (errors name the original path)."""
    return mgspec.parse_text(run["spec"]["text"], run["spec"]["path"])


def finished_epochs(directory: str | Path) -> int:
    """Epochs a run directory's checkpoint holds (0 when there is none yet)."""
    path = Path(directory) / CHECKPOINT
    return runs.read_checkpoint(path)["epoch"] if path.exists() else 0


def prepare(
    spec_path: str | Path | Source,
    overrides: Sequence[str],
    config: TrainConfig,
    directory: str | Path,
    *,
    resume: bool = False,
    explicit: Sequence[str] = (),
    require_epochs_left: bool = False,
    experiment: dict | None = None,
) -> Run:
    """Create (or reopen with ``resume``) a run directory and check it fits the spec and recipe.

    ``explicit`` names the recipe options the user passed; on resume they must agree with the
    stored recipe, except the runtime ones (epochs, device, workers, ...). With
    ``require_epochs_left``, a run that has trained ``config.epochs`` epochs already is an error.
    ``experiment`` (e.g. the paper row a run reproduces) is recorded in config.json and
    summary.json; a resumed run keeps its own.
    """
    directory = Path(directory)
    spec_path = mgspec.registry.resolve(spec_path)  # a built-in model's name -> its file
    info = dataset_info(config.dataset)
    spec, full, adapted = fit_spec(spec_path, list(overrides), info)
    record = _spec_record(spec_path, full, spec)
    if resume:
        config, stored = _reopen(directory, spec_path, record, config, explicit, require_epochs_left)
        experiment = experiment or stored.get("experiment")
    else:
        runs.check_fresh(directory)
    # A device that is not there, or a model that cannot fit it, is refused here, before any run starts.
    check_fits(record["weights"], training_device(config.device), str(spec_path))
    payload = {"mgspec": mgspec.__version__, "config": config.as_dict(), "spec": record}
    if experiment is not None:
        payload["experiment"] = experiment
    source = spec_path if isinstance(spec_path, Source) else str(spec_path)
    return Run(directory, config, source, full, adapted, payload)


def _reopen(
    directory: Path,
    spec_path: str | Path | Source,
    record: dict,
    config: TrainConfig,
    explicit: Sequence[str],
    require_epochs_left: bool,
) -> tuple[TrainConfig, dict]:
    """The recipe a resumed run continues with (its own, plus the runtime options given) and its
    stored config.json; a different spec, recipe option or no epoch left to train is refused."""
    state = runs.read(directory)  # the whole directory is checked before anything is touched
    stored = state.config
    if stored["spec"]["resolved"] != record["resolved"]:
        raise SpecError(
            f"the run was trained from a different spec ({stored['spec']['path']} "
            f"with {stored['spec']['overrides'] or 'no overrides'})",
            Location(spec_path.name if isinstance(spec_path, Source) else str(spec_path)),
            hint="resume with the spec and --set options the run started with",
        )
    old = TrainConfig.from_dict(stored["config"])
    for name in explicit:
        if name not in TrainConfig.RUNTIME and getattr(config, name) != getattr(old, name):
            raise SpecError(
                f"--{name.replace('_', '-')} {getattr(config, name)} differs from the run's "
                f"{getattr(old, name)}; a resumed run keeps its recipe",
                Location(str(directory)),
            )
    runtime = {k: getattr(config, k) for k in TrainConfig.RUNTIME if k in explicit or k in ("data_dir", "threads")}
    config = TrainConfig.from_dict({**old.as_dict(), **runtime})
    done = state.epochs_done
    if require_epochs_left and done >= config.epochs:
        raise SpecError(
            f"the run has trained {done} epochs already; --epochs {config.epochs} leaves nothing to do",
            Location(str(directory)),
            hint=f"--epochs is the total, not a number more: e.g. --epochs {2 * done}",
        )
    return config, stored


def training_device(name: str) -> torch.device:
    """The torch device ``--device NAME`` means here; one that is not there is a SpecError."""
    check_device(name)
    device = torch.device(distributed.resolve_device(name))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {name}: CUDA is not available here", hint="use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SpecError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices here")
    return device


def check_fits(
    weights: int, device: torch.device, spec_path: str, bytes_per_weight: int = TRAINING_BYTES_PER_WEIGHT
) -> None:
    """Refuse a model whose weights alone cannot fit the device, before allocating anything."""
    check_memory(weights, Location(spec_path), bytes_per_weight, device)
