"""Backend 1: the graph IR -> an ``nn.Module`` at runtime.

One torch module per weight slot, installed at the slot's path (``levels.l2.cycle.A`` becomes
nested ``ModuleDict``\\ s), so state_dict keys are the slot names and sharing is the same
module object applied by every node that names the slot. ``forward`` runs the nodes in
schedule order, one small function per op (:data:`_KERNELS`), freeing each intermediate after
its last use. A missing op is a ``KeyError`` at build time, never a silent skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from mgspec.errors import Location, SpecError
from mgspec.ir import OPS, Slot, copy, node, schedule, slots
from mgspec.passes.kernels import IMPL, TRANSFER, select_kernels
from mgspec.verify import verify


def make_module(s: Slot) -> nn.Module:
    if s.kind == "conv":
        conv = nn.Conv2d
        if s.impl == IMPL:  # the grouped 3x3 kernel where the kernel-selection pass chose it
            from mgspec.kernels import KernelConv2d as conv
        elif s.impl == TRANSFER:  # a channel transfer: weighted sums of 1-2 channels
            from mgspec.kernels.transfer import TransferConv2d as conv
        return conv(s.cin, s.cout, s.kernel, s.stride, s.kernel // 2, groups=s.groups, bias=False)
    if s.kind == "bn":
        return nn.BatchNorm2d(s.cout)
    if s.kind == "gn":
        return nn.GroupNorm(s.groups, s.cout)
    if s.kind == "linear":
        return nn.Linear(s.cin, s.cout, bias=s.bias)
    raise KeyError(f"no module for slot kind {s.kind!r}")


def shortcut_a(x: torch.Tensor, cout: int) -> torch.Tensor:
    """ResNet option A: subsample by 2 and zero-pad the new channels evenly on both sides."""
    extra = cout - x.shape[1]
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))


# One function per op: kernel(module, cout, *operands). Module-level functions, not lambdas,
# so a built model pickles (torch.save(model)).
def _module(m: nn.Module, c: int, x: torch.Tensor) -> torch.Tensor:
    return m(x)


def _zero(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


def _relu(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    return F.relu(x)


def _gelu(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x)


def _silu(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    return F.silu(x)


def _add(m: None, c: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b


def _sub(m: None, c: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a - b


def _shortcut_a(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    return shortcut_a(x, c)


def _maxpool(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, 2, 1)


def _avgpool2(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    """Restriction by 2x2 averaging; channels repeated (each input channel feeds c / cin outputs)."""
    y = F.avg_pool2d(x, 2, ceil_mode=True)
    return y if c == x.shape[1] else y.repeat_interleave(c // x.shape[1], 1)


def _avgpool(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    return x.mean((2, 3))


def _identity(m: None, c: int, x: torch.Tensor) -> torch.Tensor:
    return x


_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "zero": _zero,
    "conv": _module,
    "bn": _module,
    "gn": _module,
    "linear": _module,
    "relu": _relu,
    "gelu": _gelu,
    "silu": _silu,
    "add": _add,
    "sub": _sub,
    "shortcut_a": _shortcut_a,
    "maxpool": _maxpool,
    "avgpool2": _avgpool2,
    "avgpool": _avgpool,
    "output": _identity,
}
assert set(_KERNELS) == set(OPS) - {"input"}, "every op needs a kernel"


class GraphModel(nn.Module):
    """A model interpreted from the graph IR; ``self.graph`` is the graph it was built from."""

    def __init__(self, graph: nx.DiGraph) -> None:
        super().__init__()
        self.graph = graph
        modules: dict[str, nn.Module] = {}
        for s in slots(graph).values():
            modules[s.name] = make_module(s)
            self._install(s.name, modules[s.name])
        order = schedule(graph)
        index = {node_id: i for i, node_id in enumerate(order)}
        last_use: dict[int, int] = {}
        for i, node_id in enumerate(order):
            for arg in node(graph, node_id).args:
                last_use[index[arg]] = i
        self._program = []
        for i, node_id in enumerate(order):
            n = node(graph, node_id)
            if n.op == "input":
                self._input = i
                continue
            frees = tuple(j for j, last in last_use.items() if last == i)
            module = modules[n.slot] if n.slot else None
            self._program.append((i, _KERNELS[n.op], module, n.cout, tuple(index[a] for a in n.args), frees))
        self._size = len(order)

    def _install(self, path: str, module: nn.Module) -> None:
        *parents, leaf = path.split(".")
        owner: nn.Module = self
        for part in parents:
            if not hasattr(owner, part) or part not in owner._modules:
                owner.add_module(part, nn.ModuleDict())
            owner = owner._modules[part]
        owner.add_module(leaf, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: list = [None] * self._size
        env[self._input] = x
        out = x
        for i, kernel, module, cout, args, frees in self._program:
            out = env[i] = kernel(module, cout, *[env[a] for a in args])
            for j in frees:
                env[j] = None
        return out


def build(graph: nx.DiGraph, kernels: bool = False) -> GraphModel:
    """The runtime model of ``graph``; with ``kernels``, mgspec's own kernels where they apply
    (chosen by :func:`mgspec.passes.kernels.select_kernels`): grouped 3x3 convolutions where
    the CPU kernel wins (float32 channels_last inputs on CPU), channel transfers as weighted
    sums (every device), and BatchNorm -> activation (-> add) chains as one step that runs
    fused Triton kernels on CUDA in training mode (:mod:`mgspec.kernels.fuse`). Each module
    chooses per call, from the input's device and dtype. Without a C++ compiler or triton, or
    with ``MGSPEC_KERNELS=0``, the same modules run PyTorch's ops: the same function either way."""
    if kernels:
        graph = select_kernels(copy(graph))
        verify(graph)
    where = Location(graph.graph.get("source", "<spec>"))
    check_memory(sum(s.weights for s in slots(graph).values()), where)  # before a single tensor is allocated
    try:
        model = GraphModel(graph)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        raise SpecError(f"the model does not fit in memory: {exc}".rstrip(": "), where) from None
    if kernels:  # BatchNorm -> activation (-> add) as one step: fused Triton kernels where they run
        from mgspec.kernels.fuse import fuse_batchnorm

        fuse_batchnorm(model)
    return model


def check_memory(weights: int, where: Location, bytes_per_weight: int = 4, device: torch.device | None = None) -> None:
    """Refuse a model of ``weights`` weights (``bytes_per_weight`` each: 4 to hold it, more to train
    it) that cannot fit ``device``'s memory, or this machine's; unknown memory is no refusal."""
    if device is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, OSError, ValueError):  # no sysconf (Windows): allocation errors still apply
            return
    need = weights * bytes_per_weight
    if need > total:
        use = "training" if bytes_per_weight > 4 else "it"
        place = f"the {total / 2**30:,.1f} GiB of {device}" if device else f"this machine's {total / 2**30:,.1f} GiB"
        raise SpecError(
            f"the model has {weights:,} weights; {use} needs about {need / 2**30:,.1f} GiB, more than {place}",
            where,
            hint="reduce width, channels or steps",
        )
