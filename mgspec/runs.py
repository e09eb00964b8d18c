"""The run directory: its layout, its records validated whole, atomic writes, a lock, seeds.

A run directory holds ``config.json`` (the recipe, the spec and its counts), ``metrics.jsonl``
(one JSON object per finished epoch), ``checkpoint.pt`` (the state after the last finished
epoch) and, once the run ends, ``summary.json``. Several seeds of one experiment live in
``seed-<N>`` subdirectories, with ``summary.json`` of the parent holding every run and the
mean and standard deviation over seeds (:func:`aggregate`).

:func:`read` validates a whole run directory (config.json against :class:`ConfigRecord`,
every line of metrics.jsonl, the checkpoint's structure) before anything is touched, so a
tampered or foreign directory is one located :class:`~mgspec.errors.RunError`, never a
traceback or a half-rewritten run. JSON is written atomically (a temporary file renamed over
the target) and never holds a bare ``NaN``. :func:`locked` takes an exclusive lock on a run
directory for the duration of a training, so two processes never train into one directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mgspec.errors import Location, RunError

CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"
#: Files a run creates (and, before its first checkpoint, removes again when it fails).
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, SUMMARY)
#: The largest seed: torch, numpy and the data order all take it.
MAX_SEED = 2**32 - 1
#: Metrics averaged over seeds (mean and sample standard deviation).
AGGREGATED = ("best_test_acc", "final_test_acc", "final_train_acc", "wall_time_s")

_Finite = Field(allow_inf_nan=False)


class RecipeRecord(BaseModel):
    """``config.json``'s ``config``: the recipe a run trains with (see TrainConfig)."""

    model_config = ConfigDict(extra="allow", strict=False)

    dataset: str
    data_dir: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0, allow_inf_nan=False)
    momentum: float = _Finite
    weight_decay: float = Field(ge=0, allow_inf_nan=False)
    schedule: str
    seed: int = Field(ge=0, le=MAX_SEED)
    max_batches: int | None = Field(default=None, ge=1)
    device: str

    @field_validator("lr", "weight_decay", "momentum", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value

    @field_validator("epochs", "batch_size", "seed", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        return value


class SpecRecord(BaseModel):
    """``config.json``'s ``spec``: the spec text a run trains, its overrides and counts."""

    path: str
    text: str
    overrides: list[str]
    resolved: dict
    weights: int = Field(ge=0)
    macs: int = Field(ge=0)
    family: str
    name: str


class ConfigRecord(BaseModel):
    """``config.json``: what ``train --resume RUN`` and ``evaluate RUN`` read."""

    mgspec: str
    config: RecipeRecord
    spec: SpecRecord
    experiment: dict | None = None


class MetricsRecord(BaseModel):
    """One line of ``metrics.jsonl``."""

    model_config = ConfigDict(extra="allow")

    epoch: int = Field(ge=1)
    lr: float = _Finite
    train_loss: float = _Finite
    train_acc: float = Field(ge=0, le=1)
    test_loss: float = _Finite
    test_acc: float = Field(ge=0, le=1)
    images_per_s: float = _Finite
    elapsed_s: float = _Finite


class SummaryRecord(BaseModel):
    """``summary.json`` of one run."""

    model_config = ConfigDict(extra="allow")

    spec: str
    family: str
    dataset: str
    seed: int
    weights: int = Field(ge=0)
    macs: int = Field(ge=0)
    epochs: int = Field(ge=1)
    best_test_acc: float = Field(ge=0, le=1)
    best_epoch: int = Field(ge=1)
    final_test_acc: float = Field(ge=0, le=1)
    final_train_acc: float = Field(ge=0, le=1)
    final_test_loss: float = _Finite
    wall_time_s: float = _Finite
    images_per_s: float = _Finite


def _problem(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return field, first["msg"]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"not valid JSON: {str(exc).splitlines()[0]}", Location(path.as_posix())) from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def read_config(path: Path) -> dict:
    """``config.json`` validated whole; a RunError names the file and the field."""
    data = _json(path)
    try:
        ConfigRecord.model_validate(data)
    except ValidationError as exc:
        field, message = _problem(exc)
        raise RunError(
            message, Location(str(path)), field or None, hint="this is not a config.json that mgspec wrote"
        ) from None
    return data


def read_metrics(path: Path, upto: int | None = None) -> list[dict]:
    """The lines of ``metrics.jsonl``, validated; a torn or foreign line is named by its number.

    With ``upto`` (the epochs the checkpoint holds), a line of a later epoch, lost in a crash
    between the metrics and the checkpoint, is left out rather than checked.
    """
    if not path.exists():
        return []
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise RunError("not UTF-8 text", Location(str(path))) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_constant=_no_constant)
            if upto is not None and isinstance(data, dict) and type(data.get("epoch")) is int and data["epoch"] > upto:
                continue
            records.append(MetricsRecord.model_validate(data).model_dump())
        except (ValueError, ValidationError) as exc:
            reason = _problem(exc)[1] if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
            raise RunError(
                f"not a metrics line: {reason}",
                Location(str(path), number),
                hint="a line torn by a crash can be deleted; the checkpoint holds the finished epochs",
            ) from None
    return records


def read_checkpoint(path: Path, map_location: Any = "cpu") -> dict:
    """A run's ``checkpoint.pt`` (``weights_only``), checked for the entries a resume needs."""
    import torch

    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, garbage, or holding code objects
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"cannot read checkpoint: {reason[:200]}", Location(str(path))) from None
    needed = {"epoch": (int,), "elapsed": (int, float), "model": (dict,), "optimizer": (dict,), "scheduler": (dict,)}
    if not isinstance(state, dict):
        raise RunError("not a run checkpoint (no dict of model, optimizer and epoch)", Location(str(path)))
    for key, kinds in needed.items():
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise RunError(f"not a run checkpoint: {key!r} missing or not a {kinds[-1].__name__}", Location(str(path)))
    if state["epoch"] < 0 or not math.isfinite(state["elapsed"]):
        raise RunError(f"not a run checkpoint: epoch {state['epoch']}", Location(str(path)))
    if not isinstance(state.get("rng"), torch.Tensor):
        raise RunError("not a run checkpoint: no RNG state", Location(str(path)))
    return state


@dataclass
class RunState:
    """A validated run directory: its config.json, its metrics and the epochs its checkpoint holds."""

    directory: Path
    config: dict
    metrics: list[dict]
    epochs_done: int


def read(directory: str | Path) -> RunState:
    """Validate a whole run directory before anything is touched (a RunError if any part is wrong)."""
    directory = Path(directory)
    if not (directory / CONFIG).is_file():
        raise RunError("not a run directory (no config.json)", Location(str(directory)), hint="check --resume")
    config = read_config(directory / CONFIG)
    done = 0
    if (directory / CHECKPOINT).exists():
        done = read_checkpoint(directory / CHECKPOINT)["epoch"]
    metrics = read_metrics(directory / METRICS, upto=done)
    return RunState(directory, config, metrics, done)


def find_config(directory: str | Path) -> dict | None:
    """The validated ``config.json`` of a run directory (or of its first ``seed-*`` run), else None."""
    directory = Path(directory)
    if directory.is_file():  # a checkpoint inside a run directory
        directory = directory.parent
    for path in (directory / CONFIG, *sorted(directory.glob(f"seed-*/{CONFIG}"))):
        if path.is_file():
            return read_config(path)
    return None


def check_fresh(directory: Path) -> None:
    """A new run goes into a missing or empty directory; a run's is refused, and so is anything else."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise RunError("not a directory", Location(str(directory)), hint="choose another --out")
    entries = sorted(p.name for p in directory.iterdir())
    if not entries:
        return
    if any(name in (CHECKPOINT, METRICS) for name in entries) or (CONFIG in entries and _is_run(directory)):
        raise RunError(
            "run directory already holds a run",
            Location(str(directory)),
            hint=f"continue it with --resume {directory}, or choose another --out",
        )
    raise RunError(
        f"directory is not empty and is not a run ({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''})",
        Location(str(directory)),
        hint="choose another --out: mgspec does not write into a directory it did not create",
    )


def _is_run(directory: Path) -> bool:
    try:
        read_config(directory / CONFIG)
    except RunError:
        return False
    return True


def json_text(data: Any) -> str:
    """Indented JSON in which a non-finite float is ``null`` (JSON has no NaN)."""
    return json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, renamed over ``path`` (never half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    text = json_text(data)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (which must exist); a second holder is refused."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(
                "another mgspec process is training into this run directory",
                Location(str(directory)),
                hint="wait for it to finish, or choose another --out",
            ) from None
        yield
    finally:
        os.close(fd)


def seed_dirs(directory: Path, seed: int, seeds: int) -> dict[int, Path]:
    """Where each seed trains: the directory itself for one seed, ``seed-<N>`` folders for several."""
    if not 0 <= seed <= MAX_SEED - seeds + 1:
        raise RunError(f"--seed {seed}: seeds are 0 to {MAX_SEED:,}", hint="use a smaller --seed")
    return {s: directory if seeds == 1 else directory / f"seed-{s}" for s in range(seed, seed + seeds)}


def started_seeds(directory: Path) -> list[int]:
    """The seeds that have a ``seed-<N>`` folder in ``directory``."""
    return sorted(int(m.group(1)) for d in directory.glob("seed-*") if (m := re.fullmatch(r"seed-(\d+)", d.name)))


def spread(values: list[float]) -> float | None:
    """The sample standard deviation over seeds, as the paper's tables report it; None for one
    seed (a single run says nothing about its spread: not 0)."""
    return statistics.stdev(values) if len(values) > 1 else None


def aggregate(summaries: list[dict]) -> dict:
    """Mean and (sample) standard deviation over seeds (:func:`spread`), as the paper's tables report them."""
    out = {k: summaries[0][k] for k in ("spec", "family", "dataset", "weights", "macs", "epochs")}
    out["seeds"] = [s["seed"] for s in summaries]
    for key in AGGREGATED:
        values = [float(s[key]) for s in summaries]
        out[key] = {"mean": statistics.fmean(values), "std": spread(values)}
    return out


def write_seed_summary(directory: Path, summaries: list[dict], experiment: dict | None = None) -> dict:
    """``summary.json`` of several seeds: every run and their aggregate (returned)."""
    result = aggregate(summaries)
    payload = {"runs": summaries, "aggregate": result}
    if experiment is not None:
        payload["experiment"] = experiment
    write_json(directory / SUMMARY, payload)
    return result
