"""The study file: a pydantic model of its YAML, read with located errors exactly like a spec.

A study names a spec (relative to the study file), a dataset, training options, a number of
seeds, and either a ``grid`` (every combination is trained; ``zip`` lists are one more axis whose
values are taken side by side) or a ``search`` (an Optuna sampler draws ``trials`` points of a
``space``). The key ``levels`` cuts the spec to its first N resolution levels. Grid and space
keys are spec fields as dotted paths (``channel_grid.coarsest``) or training options as
``train.<option>`` (``train.lr``).
Errors name the study file, line and column (:func:`load_study`).
"""

from __future__ import annotations

import difflib
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mgspec.errors import Location, SpecError
from mgspec.load import DataPath, Source, format_path, point_key, read_spec_file

Scalar = str | int | float | bool
#: A number as written: `true` or `"2"` is none (an int stays an int, a float a float).
Number = Annotated[int, Field(strict=True)] | Annotated[float, Field(strict=True)]

#: Training options a study may set (``train:`` and ``train.<option>`` keys): TrainConfig's fields
#: except those the study itself decides (dataset, data directory, seed, device).
TRAIN_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "step_size",
    "gamma",
    "max_batches",
    "workers",
    "compile",
    "channels_last",
    "threads",
    "amp",
    "val_split",
)
OBJECTIVES = ("accuracy", "weights", "macs")
#: The largest seed (numpy's and torch's generators take 32-bit seeds).
MAX_SEED = 2**32 - 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Most steps of a stepped range (Optuna's step arithmetic fails on astronomically many).
MAX_STEPS = 1_000_000


def _off_the_steps(low: float, high: float, step: float) -> str | None:
    """Why ``high`` is not ``low + k * step`` (Optuna would silently draw up to the step below it),
    in the decimal arithmetic Optuna uses; None when it is."""
    d_low, d_high, d_step = (Decimal(str(v)) for v in (low, high, step))
    if (d_high - d_low) % d_step == 0:
        return None
    below = d_low + (d_high - d_low) // d_step * d_step
    return f"high {high} is not low {low} plus whole steps of {step}: end at {below} or {below + d_step}"


class Range(_Model):
    """A numeric range of a search space: integers when low, high (and step) are integers."""

    low: Number  # an int stays an int: `1` and `1.0` say which kind of range
    high: Number
    step: Annotated[int, Field(strict=True, gt=0)] | Annotated[float, Field(strict=True, gt=0)] | None = None
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not all(math.isfinite(v) for v in self._given()):
            raise ValueError("low, high and step must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.step is not None and (self.high - self.low) / self.step > MAX_STEPS:
            raise ValueError(f"more than {MAX_STEPS:,} steps from low to high: take a larger step")
        if self.step is not None and (off := _off_the_steps(self.low, self.high, self.step)) is not None:
            raise ValueError(off)
        if self.log and (self.step is not None or self.low <= 0):
            raise ValueError("a log range needs low > 0 and no step")
        return self

    @property
    def integer(self) -> bool:
        """Integers when low, high and step are written as integers (``1.0`` is a float)."""
        return all(isinstance(v, int) for v in self._given())

    def _given(self) -> list:
        return [self.low, self.high, *([self.step] if self.step is not None else [])]

    def values(self, most: int = 64) -> list[float | int]:
        """The values to validate: every step of a stepped range (up to ``most``), else low and high."""
        if self.step is None:
            out = [self.low, self.high]
        else:
            n = int(round((self.high - self.low) / self.step))
            out = [self.low + i * self.step for i in range(min(n, most) + 1)]
        return sorted({int(v) if self.integer else float(v) for v in out})

    def every(self, most: int) -> list[float | int] | None:
        """Every value a draw can take (Optuna's: ``low + k*step`` up to ``high``, integers step 1),
        or None when they are more than ``most`` or a continuum."""
        step = self.step if self.step is not None else 1 if self.integer else None
        if step is None:
            return None
        n = int((Decimal(str(self.high)) - Decimal(str(self.low))) // Decimal(str(step)))  # Optuna's arithmetic
        if n + 1 > most:
            return None
        return sorted({int(v) if self.integer else float(v) for v in (self.low + i * step for i in range(n + 1))})


def _axis_kind(value: Any) -> str:
    return "range" if isinstance(value, dict | Range) else "list"


#: A search axis: a mapping is a range, anything else must be a list of choices (so an error
#: speaks of the one the value meant, not of both).
Axis = Annotated[Annotated[list[Scalar], Tag("list")] | Annotated[Range, Tag("range")], Discriminator(_axis_kind)]


class Search(_Model):
    trials: int = Field(gt=0, le=100_000, strict=True)
    objectives: dict[Literal["accuracy", "weights", "macs"], Literal["maximize", "minimize"]] = Field(
        default_factory=lambda: {"accuracy": "maximize"}, min_length=1
    )
    max_weights: int | None = Field(default=None, gt=0, strict=True)
    sampler: Literal["nsga2", "tpe", "random"] | None = None
    space: dict[str, Axis] = Field(min_length=1)

    @field_validator("space")
    @classmethod
    def _choices(cls, v: dict) -> dict:
        for key, choices in v.items():
            if isinstance(choices, list) and not choices:
                raise ValueError(f"{key}: an empty list of choices")
        return v


class Slurm(_Model):
    partition: str | None = None
    time: int = Field(default=60, gt=0, description="minutes per job")
    gpus: int = Field(default=0, ge=0)
    cpus: int | None = Field(default=None, gt=0)
    mem_gb: float | None = Field(default=None, gt=0)


class StudyFile(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    spec: str = Field(min_length=1)
    dataset: Literal["cifar10", "cifar100", "fashionmnist", "mnist"]
    train: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        strict=True,
        description="the first seed: every point trains seeds seed .. seed+seeds-1",
    )
    seeds: int = Field(default=1, gt=0, le=1000, strict=True)
    grid: dict[str, list[Scalar]] | None = None
    zip: dict[str, list[Scalar]] | None = None  # lists taken side by side: one more axis of the grid
    objectives: dict[Literal["accuracy", "weights", "macs"], Literal["maximize", "minimize"]] | None = None
    search: Search | None = None
    slurm: Slurm | None = None
    #: A free-form record every trial's config.json keeps under ``experiment`` (``reproduce``: the paper row).
    experiment: dict[str, Any] | None = None

    @field_validator("train")
    @classmethod
    def _train_options(cls, v: dict) -> dict:
        for key in v:
            if key not in TRAIN_OPTIONS:
                close = difflib.get_close_matches(key, TRAIN_OPTIONS, n=1)
                raise ValueError(f"unknown train option {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return v

    @field_validator("seeds")
    @classmethod
    def _seed_range(cls, v: int, info: ValidationInfo) -> int:
        first = info.data.get("seed")
        if first is not None and first + v - 1 > MAX_SEED:
            raise ValueError(
                f"the last seed is {MAX_SEED:,}: from seed {first} there is room for {MAX_SEED - first + 1}"
            )
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict | None) -> dict | None:
        for key, values in (v or {}).items():
            if not values:
                raise ValueError(f"{key}: an empty list of values")
        return v

    @field_validator("zip")
    @classmethod
    def _zip(cls, v: dict | None) -> dict | None:
        if v is not None and (not v or len({len(values) for values in v.values()}) != 1 or not next(iter(v.values()))):
            lengths = ", ".join(f"{key} has {len(values)}" for key, values in v.items()) or "none given"
            raise ValueError(f"zip lists must be non-empty and have the same number of values ({lengths})")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> StudyFile:
        gridded = self.grid is not None or self.zip is not None
        if gridded == (self.search is not None):
            raise ValueError("a study has either a grid or a search (not both, not neither)")
        if set(self.grid or {}) & set(self.zip or {}):
            raise ValueError(f"{sorted(set(self.grid or {}) & set(self.zip or {}))[0]} is both in grid and in zip")
        if self.search is not None and self.objectives is not None:
            raise ValueError("a search names its objectives under search.objectives")
        return self

    @property
    def axes(self) -> dict[str, list]:
        """Every key and its values (a search's space; a grid's axes and zip lists)."""
        if self.search is not None:
            return dict(self.search.space)
        return {**(self.grid or {}), **(self.zip or {})}


class Study:
    """A loaded study file: the validated model, its source (for locations) and the spec path."""

    def __init__(self, model: StudyFile, source: Source, path: Path) -> None:
        self.model, self.source, self.path = model, source, path
        self.spec_path = (
            (path.parent / model.spec).resolve() if not Path(model.spec).is_absolute() else Path(model.spec)
        )

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def is_search(self) -> bool:
        return self.model.search is not None

    @property
    def objectives(self) -> dict[str, str]:
        if self.model.search is not None:
            return dict(self.model.search.objectives)
        return dict(self.model.objectives or {"accuracy": "maximize"})

    def locate(self, *path: str | int) -> Location:
        return self.source.locate(tuple(path))

    def definition(self) -> dict:
        """What the study computes (the file without how it runs), with the spec's text: a re-run must match."""
        data = json.loads(json.dumps(self.model.model_dump(mode="json", exclude={"slurm"})))
        # Keys added later are left out at their defaults, so studies made before them read back equal.
        for key, default in (("seed", 0), ("zip", None), ("experiment", None)):
            if data.get(key) == default:
                del data[key]
        data["train"] = {k: v for k, v in data["train"].items() if k not in ("workers", "threads", "compile")}
        try:
            data["spec_text"] = self.spec_path.read_text()
        except OSError:
            data["spec_text"] = None
        return data


def _data_path(data: Any, loc: tuple) -> DataPath:
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int):
            if isinstance(node, list) and not 0 <= part < len(node):
                break
            node = node[part]
            path.append(part)
    return tuple(path)


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown field {err['loc'][-1]!r}"
    if err["type"] == "missing":
        return f"missing required field {err['loc'][-1]!r}"
    if err["type"].endswith("_type") and len(err["loc"]) > 1 and err["loc"][-2] in ("low", "high", "step"):
        msg = "Input should be a number"  # of a range (its int or its float branch refused it)
    elif err["type"].endswith("_type") and err["loc"] and err["loc"][-1] in ("str", "int", "float", "bool"):
        msg = "Input should be a number, a string or true/false"  # a value of a grid, zip or list
    else:
        msg = err["msg"].removeprefix("Value error, ")
    if not isinstance(err.get("input"), dict | list) and "input" in err:
        msg = msg[0].lower() + msg[1:] + f", got {err['input']!r}"[:70]
    return msg


def validate(source: Source, path: Path) -> Study:
    """The located first problem of a study file's data, or the :class:`Study`."""
    try:
        model = StudyFile.model_validate(source.data)
    except ValidationError as exc:
        errors = exc.errors()

        def order(err: dict) -> tuple:
            loc = source.locate(_data_path(source.data, err["loc"]))
            # Of a union's errors at one place, the branch that took the value says what is wrong
            # (a range's "low is above high"), not the branch that wanted a list.
            return (err["type"] == "missing", loc.line or 0, loc.column or 0, err["type"].endswith("_type"))

        err = min(errors, key=order)
        where = _data_path(source.data, err["loc"])
        field = format_path(where + ((err["loc"][-1],) if err["type"] == "missing" else ()))
        hint = None
        if err["type"] == "extra_forbidden":
            known = list(StudyFile.model_fields) if len(err["loc"]) == 1 else []
            close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
        raise SpecError(_message(err), source.locate(where), field or None, hint) from None
    study = Study(model, source, path)
    _check_train_types(study)
    _refuse_duplicates(study)
    return study


def _check_train_types(study: Study) -> None:
    """Every training option (``train:`` and the axes' ``train.<option>`` values) of its recipe type,
    strictly: ``epochs: 2.0`` or ``"1"`` is no epoch count, ``true`` no number (else the trials would
    fail one by one at run time)."""
    model = study.model
    places = [(("train", k), k, v) for k, v in model.train.items()]
    for section, axes in (("grid", model.grid), ("zip", model.zip), ("search", model.search and model.search.space)):
        for path, values in (axes or {}).items():
            if path.startswith("train.") and isinstance(values, list):
                where = ("search", "space", path) if section == "search" else (section, path)
                places += [((*where, i), path[len("train.") :], v) for i, v in enumerate(values)]
    for where, option, value in places:
        if option not in TRAIN_OPTIONS:  # a train.<option> axis (train: keys are checked by the model)
            close = difflib.get_close_matches(option, TRAIN_OPTIONS, n=1)
            hint = f"did you mean 'train.{close[0]}'?" if close else f"train options: {', '.join(TRAIN_OPTIONS)}"
            raise SpecError(
                f"unknown train option {option!r}", study.locate(*where[:-1]), format_path(where[:-1]), hint
            )
        adapter = _train_type(option)
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            message = exc.errors()[0]["msg"][0].lower() + exc.errors()[0]["msg"][1:]
            raise SpecError(f"{message}, got {value!r}", study.locate(*where), format_path(where)) from None


def _train_type(option: str):
    """A strict validator of the recipe's type for ``option`` (None: not a recipe option)."""
    import typing

    from pydantic import TypeAdapter

    from mgspec.train.recipe import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    if option not in hints:
        return None
    kind = bool | str | None if option == "amp" else hints[option] | None  # amp: true or a half type
    return TypeAdapter(kind, config=ConfigDict(strict=True))


def _refuse_duplicates(study: Study) -> None:
    """A value listed twice (``[1, 1.0]``) or a zip row repeated would train the same point twice."""
    model = study.model
    lists = {("grid", k): v for k, v in (model.grid or {}).items()}
    if model.search is not None:
        lists.update({("search", "space", k): v for k, v in model.search.space.items() if isinstance(v, list)})
    for where, values in lists.items():
        keys = [point_key(v) for v in values]
        for i, value in enumerate(values):
            if keys[i] in keys[:i]:
                raise SpecError(
                    f"{value!r} is listed twice (as {values[keys.index(keys[i])]!r}): both train the same point",
                    study.locate(*where, i),
                    format_path((*where, i)),
                    "list it once",
                )
    rows = [tuple(r) for r in zip(*(model.zip or {}).values(), strict=True)]
    keys = [point_key(*r) for r in rows]
    for i, row in enumerate(rows):
        if keys[i] in keys[:i]:
            first = next(iter(model.zip))
            raise SpecError(
                f"zip row {i} ({', '.join(f'{k}={v!r}' for k, v in zip(model.zip, row, strict=True))}) repeats "
                f"row {keys.index(keys[i])}",
                study.locate("zip", first, i),
                format_path(("zip", first, i)),
                "list each combination once",
            )


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; every error is a :class:`SpecError` naming file, line and column."""
    path = Path(path)
    if path.is_dir():
        raise SpecError("a study file is a YAML file, not a directory", Location(str(path)))
    if not path.exists():
        raise SpecError("no such study file", Location(str(path)))
    source = read_spec_file(path, "study file")
    study = validate(source, path)
    if study.spec_path.is_dir():
        raise SpecError(f"{study.spec_path} is a directory, not a spec file", study.locate("spec"), "spec")
    if not study.spec_path.is_file():
        raise SpecError(f"no such spec file: {study.spec_path}", study.locate("spec"), "spec")
    read_spec_file(study.spec_path)  # unreadable, not text, not YAML: located in the spec file itself
    return study
