"""A level's channel_grid overrides the spec's field by field; refusals found after lowering are located."""

from __future__ import annotations

import textwrap

import pytest

import mgspec
from mgspec.errors import SpecError

BASE = """\
name: lv
classes: 10
resolution_grid:
  block: mgnet
  levels:
    - {{channels: 64, steps: 1{level}}}
    - {{channels: 64, steps: 1}}
{grid}"""


def write(tmp_path, text: str, name: str = "spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_level_grid_names_only_what_it_changes(tmp_path):
    grid = "channel_grid: {group_size: 4, coarsest: 16, cycle: W}\n"
    partial = write(tmp_path, BASE.format(level=", channel_grid: {coarsest: 32}", grid=grid), "partial.yaml")
    spelled = write(
        tmp_path,
        BASE.format(level=", channel_grid: {group_size: 4, coarsest: 32, cycle: W}", grid=grid),
        "spelled.yaml",
    )
    spec = mgspec.load_spec(partial)[0]
    first, second = spec.level_channel_grid(0), spec.level_channel_grid(1)
    assert (first.group_size, first.coarsest, first.cycle) == (4, 32, "W")
    assert (second.group_size, second.coarsest, second.cycle) == (4, 16, "W")
    assert mgspec.count_spec(partial).total == mgspec.count_spec(spelled).total == 42_634


def test_the_level_field_wins_and_null_still_switches_the_grid_off(tmp_path):
    grid = "channel_grid: {group_size: 4, coarsest: 16, share: [A]}\n"
    spec = mgspec.load_spec(write(tmp_path, BASE.format(level=", channel_grid: {share: [A, B]}", grid=grid)))[0]
    assert spec.level_channel_grid(0).share == ["A", "B"] and spec.level_channel_grid(1).share == ["A"]
    off = mgspec.load_spec(write(tmp_path, BASE.format(level=", channel_grid: null", grid=grid), "off.yaml"))[0]
    assert off.level_channel_grid(0) is None and off.level_channel_grid(1).share == ["A"]


def test_without_a_spec_grid_a_level_grid_must_be_complete(tmp_path):
    path = write(tmp_path, BASE.format(level=", channel_grid: {coarsest: 32}", grid=""))
    with pytest.raises(SpecError) as exc:
        mgspec.load_spec(path)
    assert str(exc.value).startswith(f"{path}:6:")
    assert "resolution_grid.levels[0].channel_grid.group_size: missing required field 'group_size'" in str(exc.value)


def test_a_bad_spec_grid_is_reported_where_it_is_written(tmp_path):
    grid = "channel_grid: {group_size: 4, coarsest: 0}\n"
    path = write(tmp_path, BASE.format(level=", channel_grid: {cycle: W}", grid=grid))
    with pytest.raises(SpecError) as exc:
        mgspec.load_spec(path)
    assert str(exc.value).startswith(f"{path}:8:41: channel_grid.coarsest: ")


def test_group_norm_on_single_values_is_refused_with_a_line_and_column(tmp_path):
    path = write(
        tmp_path,
        """\
        name: gn
        classes: 10
        input: {size: 4}
        resolution_grid:
          block: mgnet
          levels:
            - {channels: 8, steps: 1}
            - {channels: 8, steps: 1}
            - {channels: 8, steps: 1}
        layers: {norm: group, norm_groups: 8}
        """,
    )
    with pytest.raises(SpecError) as exc:
        mgspec.compile_graph(path)
    assert str(exc.value).startswith(f"{path}:10:36: layers.norm_groups: GroupNorm levels.l3.steps.0.gn1 would")


def test_a_set_override_of_one_level_field_keeps_the_rest():
    from tests.conftest import ROOT

    spec = ROOT / "specs" / "mgiad_cifar10.yaml"
    one = mgspec.count_spec(spec, ["resolution_grid.levels[3].channel_grid.coarsest=32"])
    level = "resolution_grid.levels[3].channel_grid"
    spelled = mgspec.count_spec(spec, [f"{level}.group_size=4", f"{level}.coarsest=32", f"{level}.cycle=V"])
    assert one.total == spelled.total == 342_922
