"""--set overrides: the required paths work on every shipped spec and are validated like the file."""

from __future__ import annotations

import pytest

import mgspec
from tests.conftest import ROOT, SPECS, spec_id

S = ROOT / "specs"


@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_common_overrides(path):
    spec, _ = mgspec.load_spec(path, ["width=2", "classes=100", "input.channels=1"])
    assert (spec.width, spec.classes, spec.input.channels) == (2, 100, 1)
    base = mgspec.count_spec(path)
    wide = mgspec.count_spec(path, ["width=2"])
    assert wide.total > base.total
    slots = mgspec.compile_graph(path).graph["slots"]
    c1, c_last = slots["stem.conv"].cout, slots["head.fc"].cin
    more = mgspec.count_spec(path, ["classes=100"])
    # Linear(c_L, classes) with bias: 90 more rows of c_L + 1.
    assert more.total - base.total == 90 * (c_last + 1)
    gray = mgspec.count_spec(path, ["input.channels=1"])
    assert base.total - gray.total == 2 * 9 * c1


@pytest.mark.parametrize(
    "field,value", [("group_size", 8), ("coarsest", 32), ("pre_smoothing", 2), ("post_smoothing", 3)]
)
def test_channel_grid_overrides(field, value):
    spec, _ = mgspec.load_spec(S / "mgiad_cifar10.yaml", [f"channel_grid.{field}={value}"])
    assert getattr(spec.channel_grid, field) == value
    assert mgspec.count_spec(S / "mgiad_cifar10.yaml", [f"channel_grid.{field}={value}"]).total != 393_034


def test_post_smoothing_adds_only_bn_weights():
    """architectures.md: each extra post-smoothing step adds 4 x (sum of channel-level widths)."""
    base = mgspec.count_spec(S / "mgiad_cifar10.yaml")
    more = mgspec.count_spec(S / "mgiad_cifar10.yaml", ["channel_grid.post_smoothing=2"])
    widths = [64] + [128, 64] + [256, 128, 64] * 2
    assert more.total - base.total == 4 * sum(widths)
    assert more.by_operator["A"] == base.by_operator["A"]


def test_list_index_paths_both_spellings():
    a = mgspec.count_spec(S / "mgnet_small_cifar10.yaml", ["resolution_grid.levels[2].steps=1"])
    b = mgspec.count_spec(S / "mgnet_small_cifar10.yaml", ["resolution_grid.levels.2.steps=1"])
    assert a.total == b.total < mgspec.count_spec(S / "mgnet_small_cifar10.yaml").total


def test_flow_list_override_makes_mgnet_a():
    assert mgspec.count_spec(S / "mgnet_cifar10.yaml", ["resolution_grid.share=[A]"]).total == 4_114_634
