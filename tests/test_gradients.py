"""No parameter without an op: after one forward and backward every parameter has a gradient.

The one exception is what a spec asks for explicitly: ``level1_transfers: true`` creates the
paper's level-1 R and Π, which no op applies (the published counts include them); counts
report exactly those as unused.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings

import mgspec
from tests.conftest import ROOT, spec_id
from tests.strategies import spec_data, to_source

ALL_SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "specs" / "examples").glob("*.yaml"))


def explicit_unused(spec) -> set[str]:
    """The slots the spec asks for without an op applying them."""
    grid = spec.resolution_grid
    if getattr(grid, "level1_transfers", False) and grid.restriction != "avgpool":
        name = spec.level_name(0)
        return {f"levels.{name}.R", f"levels.{name}.Pi"}
    return set()


def check_every_parameter_gets_a_gradient(source, overrides=()) -> None:
    spec, _ = mgspec.load_spec(source, list(overrides))
    model = mgspec.create_model(spec)
    h, w = spec.input.shape
    model(torch.randn(2, spec.input.channels, h, w)).logsumexp(1).sum().backward()
    without = {name for name, p in model.named_parameters() if p.grad is None}
    expected = explicit_unused(spec)
    assert {name.rpartition(".")[0] for name in without} == expected
    counts = mgspec.count_spec(spec)
    assert set(counts.unused_slots) == expected
    assert counts.total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("path", ALL_SPECS, ids=spec_id)
def test_every_parameter_of_every_spec_gets_a_gradient(path):
    check_every_parameter_gets_a_gradient(path, ["input.size=8"])


@pytest.mark.parametrize("share", ["[]", "[B]"])
def test_unshared_first_step_creates_no_weights_for_its_zero_input(share):
    """With A per step, level 1's first step applies A to u = 0: the model has no such A."""
    text = (
        "name: fresh\nclasses: 10\ninput: {size: 8}\nresolution_grid:\n  block: mgnet\n"
        f"  share: {share}\n  levels: [{{channels: 8, steps: 2}}, {{channels: 16, steps: 1}}]\n"
    )
    model = mgspec.create_model(text)
    keys = set(model.state_dict())
    assert "levels.l1.steps.0.A.weight" not in keys
    assert "levels.l1.steps.1.A.weight" in keys and "levels.l2.steps.0.A.weight" in keys
    literal = mgspec.count_spec(text, optimized=False)
    optimized = mgspec.count_spec(text)
    assert literal.total - optimized.total == 9 * 8 * 8  # one dense 3x3 A of 8 channels
    check_every_parameter_gets_a_gradient(text)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_data())
def test_every_parameter_of_drawn_specs_gets_a_gradient(data):
    check_every_parameter_gets_a_gradient(to_source(data))
