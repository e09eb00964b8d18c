"""The example study files in studies/: valid, and the counts their comments state."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import mgspec

pytest.importorskip("optuna", reason="studies need the study extra: pip install 'mgspec[study]'")

from mgspec.study import points  # noqa: E402
from mgspec.study.model import load_study  # noqa: E402

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def test_the_grid_example_has_two_points_of_two_seeds():
    study = load_study(STUDIES / "mgiad-coarsest.yaml")
    assert study.spec_path.name == "mgiad_small_cifar10.yaml" and study.spec_path.is_file()
    assert points.grid_points(study) == [{"channel_grid.coarsest": 8}, {"channel_grid.coarsest": 16}]
    assert study.model.seeds == 2 and not study.is_search


def test_the_search_example_prunes_2_invalid_and_9_over_budget_of_24():
    study = load_study(STUDIES / "mgiad-pareto.yaml")
    axes = {p: points.axis_values(a) for p, a in study.model.axes.items()}
    assert axes == {
        "channel_grid.coarsest": [4, 8, 16],
        "channel_grid.group_size": [2, 4],
        "width": [0.5, 1.0, 1.5, 2.0],
    }
    invalid, over, trainable = [], [], []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values, strict=True))
        try:
            weights, _ = points.counts(study, point)
        except mgspec.SpecError:
            invalid.append(point)
            continue
        (over if weights > study.model.search.max_weights else trainable).append(point)
    assert len(invalid) + len(over) + len(trainable) == 24
    # coarsest 16 is wider than level l1's 8 channels at width 0.5, with either group size
    assert invalid == [{"channel_grid.coarsest": 16, "channel_grid.group_size": g, "width": 0.5} for g in (2, 4)]
    assert len(over) == 9
