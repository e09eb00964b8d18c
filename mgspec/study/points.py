"""The points of a study: grid combinations, search-space values, and what one point trains.

A point is a mapping from the study's keys to values. Spec keys become ``--set PATH=VALUE``
overrides; ``train.<option>`` keys become training options on top of the study's ``train:``.
Before anything trains, every grid point is validated as a spec (fitted to the dataset) with
its training options, and every value of a search space in at least one combination; a small
search space is counted whole (enough valid points under ``max_weights`` for its ``trials``).
Errors point at the value in the study file.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable
from pathlib import Path

import mgspec
from mgspec.errors import SpecError
from mgspec.levels import LEVELS, spec_for
from mgspec.load import value_text
from mgspec.study.model import Range, Study

TRAIN = "train."
#: Most combinations tried to find a valid one for a value of a search space.
MAX_TRIES = 4096
#: A search space of at most this many points is counted whole before anything trains (~20 ms a point).
MAX_COUNTED = 256


def key(params: dict) -> str:
    """One text per point (the same for every seed of it)."""
    return json.dumps(params, sort_keys=True)


def overrides(params: dict) -> list[str]:
    """The point's spec settings as ``--set`` overrides (``levels`` cuts the spec instead: :func:`spec`)."""
    return [f"{path}={value_text(v)}" for path, v in params.items() if not path.startswith(TRAIN) and path != LEVELS]


def spec(study: Study, params: dict):
    """The spec a point trains: the study's, cut to its first N levels where the point sets ``levels``."""
    return spec_for(study.spec_path, params)


def train_options(study: Study, params: dict) -> dict:
    return {**study.model.train, **{p[len(TRAIN) :]: v for p, v in params.items() if p.startswith(TRAIN)}}


def config(
    study: Study,
    params: dict,
    seed: int,
    data_dir: str | Path,
    device: str = "cpu",
    threads: int | None = None,
    val_split: float | None = None,
):
    """The recipe of one trial: the paper's, then the study's ``train:``, then the point's ``train.*``.

    A trial holds out a validation split unless the study sets ``val_split``: a search then
    selects on validation accuracy, never on the test set it reports. The split's default is
    ``val_split`` (what the study's storage recorded when it was created, see
    :func:`mgspec.study.storage.default_val_split`), else
    :data:`~mgspec.run_options.DEFAULT_VAL_SPLIT`, as a new ``mgspec train`` run has.
    """
    from mgspec.run_options import DEFAULT_VAL_SPLIT
    from mgspec.train import recipe

    given = train_options(study, params)
    given.setdefault("val_split", DEFAULT_VAL_SPLIT if val_split is None else val_split)
    if threads is not None and "threads" not in given:
        given["threads"] = threads
    given["amp"] = given.get("amp") or None
    try:
        return recipe(study.model.dataset, str(data_dir), **{**given, "seed": seed, "device": device})
    except TypeError as exc:  # a value of the wrong type for a recipe field
        raise SpecError(f"bad training option: {exc}") from None


def counts(study: Study, params: dict) -> tuple[int, int]:
    """Weights and MACs of a point's spec fitted to the dataset (raises the spec's SpecError)."""
    from mgspec.train.data import dataset_info
    from mgspec.train.recipe import fit_spec

    fitted, _, _ = fit_spec(spec(study, params), overrides(params), dataset_info(study.model.dataset))
    result = mgspec.count_spec(fitted)
    return result.total, result.macs


def check(study: Study, params: dict, data_dir: str | Path = "data", device: str = "cpu") -> tuple[int, int]:
    """Counts of a valid point; a SpecError for an invalid spec or training option."""
    weights_macs = counts(study, params)
    config(study, params, 0, data_dir, device)
    return weights_macs


def grid_axes(study: Study) -> list[list[dict]]:
    """A grid's axes, each a list of partial points: one per grid key, and one for all zip lists."""
    axes = [[{path: v} for v in values] for path, values in (study.model.grid or {}).items()]
    zipped = study.model.zip or {}
    if zipped:
        count = len(next(iter(zipped.values())))
        axes.append([{path: values[i] for path, values in zipped.items()} for i in range(count)])
    return axes


def grid_points(study: Study) -> list[dict]:
    """Every combination of a grid, in order (the last axis fastest)."""
    return [{k: v for part in parts for k, v in part.items()} for parts in itertools.product(*grid_axes(study))]


def axis_values(axis) -> list:
    return axis.values() if isinstance(axis, Range) else list(axis)


def _relocated(study: Study, exc: SpecError, path: str, index: int | None, what: str) -> SpecError:
    section = ("search", "space") if study.is_search else ("zip",) if path in (study.model.zip or {}) else ("grid",)
    where = study.locate(*section, path, *(() if index is None else (index,)))
    field = ".".join(section) + f".{path}" + ("" if index is None else f"[{index}]")
    message = exc.message if exc.message.startswith(f"{what}: ") else f"{what}: {exc.message}"
    return SpecError(message, where, field, exc.hint)


def validate(study: Study, data_dir: str | Path = "data", device: str = "cpu") -> dict[str, tuple[int, int]]:
    """Validate every grid point (or every search-space value in some combination) before training.

    Returns the counts of the points checked, by :func:`key`.
    """
    _check_train(study, data_dir, device)
    checked: dict[str, tuple[int, int]] = {}
    if not study.is_search:
        axes = grid_axes(study)
        first = {k: v for axis in axes for k, v in axis[0].items()}
        for axis in axes:
            for i, part in enumerate(axis):
                point = {**first, **part}
                try:
                    checked[key(point)] = check(study, point, data_dir, device)
                except SpecError as exc:
                    text = ", ".join(f"{p}={value_text(v)}" for p, v in part.items())
                    raise _relocated(study, exc, next(iter(part)), i, text) from None
        for point in grid_points(study):
            if key(point) not in checked:
                try:
                    checked[key(point)] = check(study, point, data_dir, device)
                except SpecError as exc:
                    text = ", ".join(f"{p}={value_text(v)}" for p, v in point.items())
                    raise _relocated(study, exc, next(iter(point)), None, f"the combination {text}") from None
        return checked
    axes = {p: axis_values(a) for p, a in study.model.axes.items()}
    for path, values in axes.items():
        for i, value in enumerate(values):
            others = {p: v for p, v in axes.items() if p != path}
            error = None
            for combo in itertools.islice(_product(others), MAX_TRIES):
                point = {**combo, path: value}
                try:
                    checked[key(point)] = check(study, point, data_dir, device)
                    break
                except SpecError as exc:
                    error = error or exc
            else:
                index = i if isinstance(study.model.search.space[path], list) else None
                raise _relocated(study, error, path, index, f"{path}={value_text(value)} fits no combination") from None
    _check_space(study, checked, data_dir, device)
    return checked


def _check_space(study: Study, checked: dict, data_dir: str | Path, device: str) -> None:
    """A search space of at most :data:`MAX_COUNTED` points, counted whole: one without a valid point
    under ``max_weights``, or with fewer than ``trials``, is refused (its search would stop short)."""
    search = study.model.search
    space = {p: list(a) if isinstance(a, list) else a.every(MAX_COUNTED) for p, a in search.space.items()}
    if any(v is None for v in space.values()) or math.prod(len(v) for v in space.values()) > MAX_COUNTED:
        return
    valid, fits = 0, []
    for point in _product(space):
        try:
            if key(point) not in checked:
                checked[key(point)] = check(study, point, data_dir, device)
        except SpecError:
            continue
        weights = checked[key(point)][0]
        valid += 1
        if search.max_weights is None or weights <= search.max_weights:
            fits.append(weights)
    under = f" under max_weights {search.max_weights:,}" if search.max_weights else ""
    if not fits:  # so max_weights is set: every value of the space fits some valid point
        raise SpecError(
            f"no point of the search space has at most {search.max_weights:,} weights "
            f"({'its one valid point has' if valid == 1 else f'its {valid} valid points have'} more)",
            study.locate("search", "max_weights"),
            "search.max_weights",
            "raise max_weights or add smaller values to the space",
        )
    if len(fits) < search.trials:
        raise SpecError(
            f"trials {search.trials} is more than the search space's {len(fits)} valid "
            f"point{'' if len(fits) == 1 else 's'}{under}",
            study.locate("search", "trials"),
            "search.trials",
            f"set trials to at most {len(fits)}, or widen the space",
        )


def _check_train(study: Study, data_dir: str | Path, device: str) -> None:
    """The study's ``train:`` options each on its own, an error located at its key (not at a grid value)."""
    from mgspec.train import recipe

    for option, value in study.model.train.items():
        try:
            recipe(study.model.dataset, str(data_dir), **{option: value or None if option == "amp" else value},
                   device=device)  # fmt: skip
        except SpecError as exc:
            raise SpecError(exc.message, study.locate("train", option), f"train.{option}", exc.hint) from None


def _product(axes: dict[str, list]) -> Iterable[dict]:
    for values in itertools.product(*axes.values()):
        yield dict(zip(axes, values, strict=True))
