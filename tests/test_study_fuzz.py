"""Fuzzed study files: every one loads, or is refused with a SpecError that names the file; never a traceback."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mgspec
from mgspec.errors import Location, SpecError
from mgspec.levels import spec_for
from mgspec.load import value_text
from mgspec.study import load_study, points
from tests import synthetic

KEYS = ["name", "spec", "dataset", "train", "seeds", "seed", "grid", "zip", "search", "objectives", "slurm",
        "experiment", "nmae", "grid.x"]  # fmt: skip
PATHS = ["width", "levels", "channel_grid.coarsest", "train.lr", "train.epochs", "classes", "", "x" * 70]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(PATHS), inner, max_size=3),
    max_leaves=8,
)
wild_axes = st.dictionaries(st.sampled_from(PATHS), st.lists(scalars, max_size=3) | scalars, max_size=3)
good_axes = st.dictionaries(
    st.sampled_from(["width", "levels", "channel_grid.coarsest", "train.lr"]),
    st.lists(st.integers(1, 4), min_size=1, max_size=3),
    min_size=1,
    max_size=2,
)
axes = good_axes | wild_axes


def mostly(good, wild=values):
    """Valid values most of the time (so the loaders get past the first field), anything else sometimes."""
    return st.integers(0, 9).flatmap(lambda k: good if k < 8 else wild)


search = st.fixed_dictionaries(
    {"trials": mostly(st.integers(1, 5)), "space": axes},
    optional={
        "objectives": mostly(st.just({"accuracy": "maximize", "weights": "minimize"})),
        "max_weights": mostly(st.integers(1, 10**6)),
    },  # fmt: skip
)
common = {
    "name": mostly(st.sampled_from(["s", "ok-1"]), st.sampled_from(["a b", "", "x" * 70])),
    "spec": st.just("tiny.yaml"),
    "dataset": mostly(st.sampled_from(["cifar10", "mnist"]), st.sampled_from(["imagenet", 3])),
}
optional = {
    "train": mostly(st.fixed_dictionaries({}, optional={"epochs": st.integers(1, 3), "val_split": st.floats(0, 0.5)}),
                    st.dictionaries(st.sampled_from(["epochs", "lr", "val_split", "lrr"]), values, max_size=2)),
    "seeds": mostly(st.integers(1, 3)),
    "seed": mostly(st.integers(0, 9)),
    "experiment": mostly(st.dictionaries(st.text(max_size=5), scalars, max_size=2)),
}  # fmt: skip
grid_studies = st.fixed_dictionaries({**common, "grid": axes}, optional={**optional, "zip": axes})
search_studies = st.fixed_dictionaries({**common, "search": search}, optional=optional)
wrong_studies = st.fixed_dictionaries(common, optional={**optional, "grid": axes, "search": search, "nmae": values})
studies = grid_studies | search_studies | wrong_studies


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=studies)
def test_a_fuzzed_study_file_loads_or_is_a_located_error(tmp_path: Path, data: dict) -> None:
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        study = load_study(path)
    except SpecError as exc:
        assert exc.location.source == str(path) and exc.message
        return
    assert study.model.name == data["name"]
    study.definition()  # what a re-run compares: always computable
    if not study.is_search:  # every combination of a valid grid is a mapping of its keys
        trained = []
        for point in points.grid_points(study):
            assert set(point) == set(study.model.axes)
            options = json.dumps(points.train_options(study, point), sort_keys=True, default=str)
            trained.append((tuple(sorted(points.overrides(point))), options, value_text(point.get("levels"))))
        assert len(set(trained)) == len(trained), "two points of a loaded study train the same network"
    try:  # what `study run` checks before anything trains: every point is a spec, or a located error
        checked = points.validate(study, tmp_path / "data", "cpu")
    except SpecError as exc:
        assert exc.location.source == str(path) and exc.location.line is not None, exc
        return
    assert all(weights > 0 and macs > 0 for weights, macs in checked.values())


@settings(max_examples=100, deadline=None)
@given(value=scalars)
def test_a_levels_value_is_a_spec_or_a_located_error(value) -> None:
    where = Location("--grid levels")
    try:
        source = spec_for(mgspec.parse_text(synthetic.TINY_SPEC, "tiny.yaml"), {"levels": value}, where)
    except SpecError as exc:
        assert exc.location == where
        return
    assert isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2
    assert len(source.data["resolution_grid"]["levels"]) == value


ranges = st.one_of(
    st.builds(lambda low, span: {"low": low, "high": low + span}, st.integers(-5, 5), st.integers(0, 8)),
    st.builds(lambda low, n, step: {"low": low, "high": low + n * step, "step": step},
              st.integers(-5, 5), st.integers(0, 4), st.integers(1, 3)),
    st.builds(lambda low, step, n: {"low": low, "high": float(Decimal(str(low)) + n * Decimal(str(step))),
                                    "step": step},
              st.sampled_from([0.0, 0.5, 0.1, -1.0]), st.sampled_from([0.5, 0.25, 0.3, 0.1]), st.integers(0, 7)),
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(given_range=ranges)
def test_every_value_of_a_counted_range_is_what_optuna_draws(given_range: dict) -> None:
    """A small space is counted whole before training (``Range.every``): the values Optuna's sampler
    draws from the axis, and no others."""
    import math

    import optuna

    from mgspec.study.draws import distribution
    from mgspec.study.model import Range

    axis = Range(**given_range)
    every = axis.every(most=64)
    assert every is not None and len(every) <= 9
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {study.ask({"x": distribution(axis)}).params["x"] for _ in range(300)}
    assert len(drawn) == len(every)  # 300 draws of at most 9 values: each is drawn (all but surely)
    for value, expected in zip(sorted(drawn), every, strict=True):
        assert math.isclose(value, expected, abs_tol=1e-9) and type(value) is type(expected)
    assert axis.every(most=len(every) - 1) is None
    assert Range(low=0.0, high=1.0).every(most=64) is None  # a continuum


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("seeds: true\ngrid: {width: [1]}\n", "4:8", "seeds: input should be a valid integer, got True"),
        ("seeds: 2.0\ngrid: {width: [1]}\n", "4:8", "seeds: input should be a valid integer, got 2.0"),
        ("seed: '1'\ngrid: {width: [1]}\n", "4:7", "seed: input should be a valid integer, got '1'"),
        ("search: {trials: 1.0, space: {width: [1]}}\n", "4:18", "search.trials: input should be a valid integer"),
        ("search: {trials: 1, space: {width: {low: true, high: 2}}}\n", "4:42",
         "search.space.width.low: input should be a number, got True"),
        ("search: {trials: 1, space: {width: {low: 0.5, high: 1.0, step: 0.3}}}\n", "4:36",
         "search.space.width: high 1.0 is not low 0.5 plus whole steps of 0.3: end at 0.8 or 1.1"),
        ("search: {trials: 1, space: {levels: {low: 1, high: 8, step: 2}}}\n", "4:37",
         "search.space.levels: high 8 is not low 1 plus whole steps of 2: end at 7 or 9"),
    ],
)  # fmt: skip
def test_a_value_written_as_another_type_or_off_its_steps_is_refused_at_its_place(tmp_path, body, where, message):
    """``seeds: true`` is not one seed, and a range whose high is off its steps would draw up to the
    step below it without a word (Optuna's warning goes to a log)."""
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    path = tmp_path / "study.yaml"
    path.write_text("name: s\nspec: tiny.yaml\ndataset: cifar10\n" + body)
    with pytest.raises(SpecError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}:{where}: {message}"), str(err.value)


def test_a_spec_path_that_is_a_directory_or_not_text_is_refused_at_the_spec(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: s\nspec: .\ndataset: cifar10\ngrid: {width: [1]}\n")
    with pytest.raises(SpecError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}:2:7: spec: {tmp_path} is a directory, not a spec file")
    (tmp_path / "binary.yaml").write_bytes(b"name: x\n\xf0\x28\x8c\x28\n")
    path.write_text("name: s\nspec: binary.yaml\ndataset: cifar10\ngrid: {width: [1]}\n")
    with pytest.raises(SpecError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{tmp_path / 'binary.yaml'}:2:1: cannot read spec: byte 0xf0 is not UTF-8")
