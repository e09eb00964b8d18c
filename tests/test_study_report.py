"""A study's report from its trials: the mean and spread of each point over its seeds, and the front."""

from __future__ import annotations

import math

from mgspec.study import report


def _row(number: int, seed: int, acc: float, weights: int = 100, state: str = "complete", **params) -> dict:
    return {"number": number, "state": state, "params": params or {"width": 1}, "seed": seed,
            "weights": weights, "macs": 10 * weights, "test_acc": acc, "val_acc": None}  # fmt: skip


def test_a_point_has_the_mean_and_sample_std_of_its_completed_seeds():
    rows = [_row(0, 0, 0.5), _row(1, 1, 0.7), _row(2, 2, 0.1, state="failed")]
    (point,) = report.points(rows)
    assert point["seeds"] == [0, 1]
    assert math.isclose(point["acc_mean"], 0.6)
    assert math.isclose(point["acc_std"], math.sqrt(0.02))  # (0.1² + 0.1²) / (2 - 1), not / 2
    assert point["val_mean"] is None and point["val_std"] is None


def test_one_seed_has_no_spread_not_a_spread_of_zero():
    """A single run says nothing about how much seeds vary: null, and the table shows the mean alone."""
    (point,) = report.points([_row(0, 0, 0.5)])
    assert point["acc_mean"] == 0.5 and point["acc_std"] is None


def test_the_front_is_the_completed_trials_no_other_dominates():
    rows = [
        _row(0, 0, 0.60, 100, width=1),
        _row(1, 0, 0.70, 200, width=2),
        _row(2, 0, 0.65, 300, width=3),  # dominated by trial 1: fewer weights, more accurate
        _row(3, 0, 0.90, 50, width=4, state="failed"),  # would dominate all, but did not complete
        _row(4, 0, 0.60, 100, width=5),  # the same as trial 0: neither dominates the other
    ]
    assert report.pareto(rows, {"accuracy": "maximize", "weights": "minimize"}) == [0, 1, 4]


def test_a_point_without_parameters_is_named_the_spec_as_written(capsys):
    """``grid: {}`` (what ``reproduce`` writes for a row without overrides) is one point: the spec itself."""
    from mgspec.cli.study import print_table

    rows = [{**_row(0, 0, 0.5), "params": {}, "reason": None, "val_acc": None}]
    print_table({"trials": rows, "points": report.points(rows), "pareto": [0], "objectives": {}})
    out = capsys.readouterr().out
    assert "(the spec as written) *" in out and "point (the spec as written): 100 weights" in out
