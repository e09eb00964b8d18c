"""The cycle table (mgspec.cycles) is the one source of a cycle's shape: the lowering declares the
smoothing steps it lists and the schema's size limit counts the same steps.

With p pre- and q post-smoothing steps and d channel levels below the finest, one cycle takes
    V: (p + q)(d + 1) + 1        (every level smooths p + q times, the coarsest once more)
    W: (p + q)(2^(d+1) - 1) + 2^d (level j is visited 2^j times; each coarsest visit solves once)
"""

from __future__ import annotations

import typing

import pytest

import mgspec
from mgspec import SpecError
from mgspec.cycles import CYCLES
from mgspec.ir import walk
from mgspec.schema import MAX_SMOOTHING_STEPS, ChannelGrid

SPEC = """\
name: cycles
input: {{channels: 3, size: 16}}
classes: 10
resolution_grid:
  block: mgnet
  levels:
    - {{channels: 64, steps: {steps}}}
channel_grid: {{group_size: 4, coarsest: {coarsest}, pre_smoothing: {p}, post_smoothing: {q}, cycle: {cycle}}}
"""


def expected(cycle: str, p: int, q: int, d: int) -> int:
    """The closed forms of the module docstring."""
    if cycle == "V":
        return (p + q) * (d + 1) + 1
    return (p + q) * (2 ** (d + 1) - 1) + 2**d


def test_the_closed_forms_by_hand():
    # d = 1, p = q = 1: V = pre, (pre, solve, post), post; W = pre, 2 x (pre, solve, post), post
    assert expected("V", 1, 1, 1) == 5
    assert expected("W", 1, 1, 1) == 8
    # d = 2, p = 2, q = 1: W = 3 + 2 x (3 + 2 x 4)
    assert expected("W", 2, 1, 2) == 25


def smoothing_blocks(graph) -> int:
    return sum(b.kind == "smoothing_step" for b in walk(graph.graph["blocks"]))


@pytest.mark.parametrize("cycle", ["V", "W"])
@pytest.mark.parametrize("d", [0, 1, 2, 3])
@pytest.mark.parametrize(("p", "q"), [(1, 1), (2, 0), (2, 1)])
def test_lowering_and_schema_limit_count_the_same_steps(cycle, d, p, q):
    want = expected(cycle, p, q, d)
    text = SPEC.format(steps=1, coarsest=64 >> d, p=p, q=q, cycle=cycle)
    spec, _ = mgspec.load_spec(text)
    assert spec._vcycle_steps(0, 64) == want  # what the size limit counts
    assert smoothing_blocks(mgspec.compile_graph(text, optimized=False)) == want  # what the lowering declares


def test_the_limit_reports_the_cycles_steps():
    # 10 W-cycles over 4 coarser levels of 3 + 3 steps: 10 x (6 x 31 + 16) = 2,020 steps, under the limit
    mgspec.load_spec(SPEC.format(steps=10, coarsest=4, p=3, q=3, cycle="W"))
    with pytest.raises(SpecError, match="2,222 smoothing steps in all exceed"):  # 11 x 202
        mgspec.load_spec(SPEC.format(steps=11, coarsest=4, p=3, q=3, cycle="W"))
    assert 2_020 <= MAX_SMOOTHING_STEPS < 2_222


def test_the_schema_offers_the_tables_cycles():
    choices = typing.get_args(ChannelGrid.model_fields["cycle"].annotation)
    assert set(choices) == set(CYCLES)
