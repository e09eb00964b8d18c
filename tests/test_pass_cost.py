"""The optimisation passes cost time linear in the graph's size.

Measured as the number of Python function calls (deterministic, unlike wall-clock time) that
optimising a spec takes, for a network and the same network with twice the blocks: linear
work doubles, work quadratic in the graph's size (rebuilding the block tree per replaced
value, as the passes once did) quadruples.
"""

from __future__ import annotations

import cProfile
import pstats

import pytest

import mgspec
from mgspec import passes

SPECS = {
    "mgic": "resolution_grid:\n  block: resnet_basic\n  levels: [{channels: 16, steps: STEPS}]\n"
    "channel_grid: {group_size: 4, coarsest: 4, pre_smoothing: 2, post_smoothing: 2}\n",
    "mgiad": "resolution_grid:\n  block: mgnet\n"
    "  levels: [{channels: 16, steps: STEPS}, {channels: 16, steps: STEPS}]\n"
    "channel_grid: {group_size: 4, coarsest: 4, share: []}\n",
}


def calls_to_optimize(body: str, steps: int) -> int:
    graph = mgspec.compile_graph(
        f"name: n\nclasses: 10\ninput: {{size: 8}}\n{body.replace('STEPS', str(steps))}", optimized=False
    )
    profiler = cProfile.Profile()
    profiler.enable()
    passes.optimize(graph)
    profiler.disable()
    return pstats.Stats(profiler).total_calls


@pytest.mark.slow
@pytest.mark.parametrize("family", SPECS)
def test_optimising_twice_the_blocks_costs_about_twice_the_work(family):
    small, large = (calls_to_optimize(SPECS[family], steps) for steps in (24, 48))
    assert large < 2.5 * small, f"{small:,} calls for 24 steps, {large:,} for 48"
