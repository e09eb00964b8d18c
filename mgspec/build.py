"""Backend 1: the graph IR -> an ``nn.Module`` at runtime.

One torch module per weight slot, installed at the slot's path (``levels.l2.cycle.A`` becomes
nested ``ModuleDict``\\ s), so state_dict keys are the slot names and sharing is the same
module object applied by every node that names the slot. Each module is built by evaluating
its slot kind's constructor description (:data:`mgspec.ops.SLOTS`), the one codegen prints.
``forward`` runs the nodes in schedule order, calling each op's torch callable (named in
:data:`mgspec.ops.OPS`) or its slot's module, freeing each intermediate after its last use.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from mgspec import torch_ops
from mgspec.errors import Location, SpecError
from mgspec.expr import Call, Expr, Num, Seq
from mgspec.ir import Slot, copy, node, schedule, slots
from mgspec.ops import OPS, SLOTS, Op
from mgspec.passes.kernels import IMPL, TRANSFER, select_kernels
from mgspec.verify import verify

_SHORT = {"nn": nn, "F": F}  # the aliases generated source imports


def resolve_name(qualified: str):
    """The object a qualified name names (``torch.nn.functional.relu``, ``nn.Conv2d``); a bare
    name is a helper of :mod:`mgspec.torch_ops` (which a generated file includes)."""
    parts = qualified.split(".")
    if len(parts) == 1:
        return getattr(torch_ops, qualified)
    if parts[0] in _SHORT:
        obj, rest = _SHORT[parts[0]], parts[1:]
    else:
        i = len(parts) - 1
        while i > 1 and importlib.util.find_spec(".".join(parts[:i])) is None:
            i -= 1
        obj, rest = importlib.import_module(".".join(parts[:i])), parts[i:]
    for attr in rest:
        obj = getattr(obj, attr)
    return obj


def construct(e: Expr):
    """Evaluate a constructor description (:class:`mgspec.expr.Call`): the module codegen prints."""
    if isinstance(e, Num):
        return e.value
    if isinstance(e, Call):
        args = [construct(v) for k, v in e.args if k is None]
        return resolve_name(e.func)(*args, **{k: construct(v) for k, v in e.args if k is not None})
    if isinstance(e, Seq | str):
        raise TypeError(f"a slot constructor takes numbers, not {e!r}")
    return e


def make_module(s: Slot) -> nn.Module:
    call = SLOTS[s.kind].ctor(s)
    if s.impl == IMPL:  # the grouped 3x3 kernel where the kernel-selection pass chose it
        call = Call("mgspec.kernels.KernelConv2d", call.args)
    elif s.impl == TRANSFER:  # a channel transfer: weighted sums of 1-2 channels, never a grouped 1x1 conv
        call = Call("mgspec.kernels.transfer.TransferConv2d", call.args)
    return construct(call)


def _step(op: Op, module: nn.Module | None, cout: int) -> tuple[Callable[..., torch.Tensor], tuple]:
    """What the runtime calls for an application of ``op``, and the arguments after the operands."""
    if op.slot:
        return module, ()
    return resolve_name(op.function), op.extra + ((cout,) if op.with_cout else ())


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
            function, extra = _step(OPS[n.op], modules[n.slot] if n.slot else None, n.cout)
            self._program.append((i, function, extra, tuple(index[a] for a in n.args), frees))
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
        for i, function, extra, args, frees in self._program:
            out = env[i] = function(*[env[a] for a in args], *extra)
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
