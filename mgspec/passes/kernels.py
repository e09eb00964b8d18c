"""Kernel selection: mark the convolutions mgspec's own kernels should run.

A backend pass, not an optimisation of the math: it changes no node and no count, only the
``impl`` of conv slots, which the runtime backend reads (``build(graph, kernels=True)``,
what ``create_model`` and ``mgspec train`` do). Two marks:

- :data:`IMPL` (``grouped3x3``): the CPU grouped 3x3 kernel computes the slot (3x3, stride 1,
  no bias, groups > 1, as many output as input channels, a group size the vector code covers)
  and wins over oneDNN at every application's spatial size, by the measured table below;
- :data:`TRANSFER` (``transfer``): a channel transfer, a 1x1 stride-1 convolution without
  bias with one or two input channels per group (MGiaD's R, Pi and P), which
  :mod:`mgspec.kernels.transfer` computes as weighted sums on every device.

The generated standalone source never uses the kernels: it stays torch-only.

The table needs no torch, so deciding costs nothing; :mod:`mgspec.kernels` holds the kernel.
"""

from __future__ import annotations

import networkx as nx

from mgspec.ir import node, slots
from mgspec.verify import spatial_sizes

IMPL = "grouped3x3"
TRANSFER = "transfer"

#: Group sizes the kernel's vector code covers (others would run its scalar loops and lose).
GROUP_SIZES = (2, 4, 8, 16)

#: Group size -> (fewest channels, smallest H*W) from which the kernel is used. Measured on the
#: reference CPU (benchmarks/gconv.py, docs/performance.md; batch 64 and batch 1, float32,
#: channels_last): for group sizes 2, 4 and 8 the kernel beat oneDNN in every pass of every shape
#: measured, from 16 to 256 channels and 2x2 to 32x32; for 16 its weight gradient is about even
#: with oneDNN's but forward and input gradient win, so a training step still gains.
WINS: dict[int, tuple[int, int]] = {2: (8, 1), 4: (8, 1), 8: (8, 1), 16: (16, 1)}


def wins(channels: int, group_size: int, height: int, width: int) -> bool:
    """Whether the kernel beats oneDNN's grouped convolution for this float32 CPU shape."""
    limits = WINS.get(group_size)
    return channels % 8 == 0 and limits is not None and channels >= limits[0] and height * width >= limits[1]


def computes(kind: str, cin: int, cout: int, kernel: int, stride: int, groups: int, bias: bool) -> bool:
    """Whether the kernel computes this convolution at all."""
    return (
        kind == "conv"
        and kernel == 3
        and stride == 1
        and not bias
        and groups > 1
        and cin == cout
        and cin // groups in GROUP_SIZES
    )


def is_transfer(kind: str, cin: int, cout: int, kernel: int, stride: int, groups: int, bias: bool) -> bool:
    """Whether a convolution is a channel transfer: 1x1, stride 1, no bias, 1-2 input channels per group."""
    return (
        kind == "conv"
        and kernel == 1
        and stride == 1
        and not bias
        and cin % groups == 0
        and cout % groups == 0
        and cin // groups in (1, 2)
    )


def select_kernels(graph: nx.DiGraph) -> nx.DiGraph:
    shapes = spatial_sizes(graph, graph.graph["spec"].input.shape)
    sizes: dict[str, list[tuple[int, int]]] = {}
    for node_id in graph.nodes:
        n = node(graph, node_id)
        if n.op == "conv":
            sizes.setdefault(n.slot, []).append(shapes[node_id][1:])
    table = dict(slots(graph))
    for name, s in table.items():
        if (
            computes(s.kind, s.cin, s.cout, s.kernel, s.stride, s.groups, s.bias)
            and name in sizes
            and all(wins(s.cin, s.cin // s.groups, h, w) for h, w in sizes[name])
        ):
            table[name] = s.__class__(**{**s.__dict__, "impl": IMPL})
        elif is_transfer(s.kind, s.cin, s.cout, s.kernel, s.stride, s.groups, s.bias):
            table[name] = s.__class__(**{**s.__dict__, "impl": TRANSFER})
    graph.graph["slots"] = table
    return graph
