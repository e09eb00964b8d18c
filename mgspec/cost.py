"""The cost model: FLOPs, bytes moved, kernels launched and activation memory, from the graph alone.

For a batch of ``N`` images in a dtype (``bf16`` or ``fp32``), per forward pass and per training
step (forward, cross-entropy, backward with input and weight gradients, SGD with momentum and
weight decay). No tensor is created; torch is not imported. docs/performance.md ("The cost
model") states every rule; tests/test_cost.py checks FLOPs and kernel counts against what torch
dispatches on CPU.

- **FLOPs** count multiply-adds of convolutions and linear layers as 2 FLOPs, as
  ``torch.utils.flop_counter`` does: forward, input gradient (not for the image) and weight gradient
  are each 2 x MACs. Element-wise work (BatchNorm, activations, additions) is not counted.
- **Bytes, unfused**: every op reads each operand and writes its output once, in the dtype;
  weights are read in the dtype, the optimizer works on float32 master weights.
- **Bytes, fused**: an element-wise op (BatchNorm, GroupNorm, activation, add, sub) read by exactly
  one op is never written: its reader computes it on the fly from the values it was computed from
  (the *sources*: outputs of other ops, and values read by several ops). Every other value is
  written once and read once by each reader.
- **Kernels (eager)**: the aten ops that compute (views and allocations excluded) for each op, per
  pass, as torch dispatches them; a GPU may run more than one device kernel for one aten op. bf16
  autocast adds a cast per weight tensor each way, the image's cast and the logits' (and back).
- **Activation memory**: the distinct tensors autograd keeps from the forward pass for the backward.

The floor is ``max(FLOPs / peak rate, bytes / bandwidth)`` for the measured H200 ceilings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from mgspec.errors import SpecError
from mgspec.ir import Node, node, slots
from mgspec.verify import spatial_sizes

#: Measured on one NVIDIA H200 (device-to-device copy, bytes read + written; bf16 8192^3 matmul).
H200_BANDWIDTH = 4.24e12
H200_BF16_FLOPS = 791e12
#: float32 convolutions and matmuls run as TF32 on the tensor cores at half the bf16 rate.
H200_TF32_FLOPS = H200_BF16_FLOPS / 2

DTYPES = {"bf16": 2, "fp32": 4}

# -- op properties: the one place that reads what an op is -------------------------------------

_ELEMENTWISE = frozenset({"bn", "gn", "relu", "gelu", "silu", "add", "sub"})
#: Ops whose backward keeps their input (conv, linear: for the weight gradient; norms, gelu, silu,
#: pooling: for their own gradient) or their output (relu).
_SAVES_INPUT = frozenset({"conv", "linear", "bn", "gn", "gelu", "silu", "maxpool"})
_SAVES_OUTPUT = frozenset({"relu"})


def is_elementwise(n: Node) -> bool:
    """Whether a fused implementation can compute the op inside its producer or reader."""
    return n.op in _ELEMENTWISE


def has_weights(n: Node) -> bool:
    return n.slot is not None


def passes_gradient(n: Node) -> bool:
    """Whether the op's output depends on its operands (a gradient flows back through it)."""
    return n.op not in ("zero", "input")


def forward_kernels(n: Node, graph: nx.DiGraph) -> int:
    """Aten compute ops of the op's forward pass in training (eager)."""
    op = n.op
    if op in ("input", "output"):
        return 0
    if op == "bn":
        return 2  # native_batch_norm, and num_batches_tracked += 1
    if op == "avgpool2" and n.cin != n.cout:
        return 2  # avg_pool2d, and repeat_interleave's copy
    return 1


def backward_kernels(n: Node, graph: nx.DiGraph, needs_grad: dict[str, bool]) -> int:
    """Aten compute ops of the op's backward pass (eager), without gradient accumulation."""
    op = n.op
    if op in ("input", "output", "zero", "add"):
        return 0  # add hands its output's gradient to both operands unchanged
    if op == "sub":
        return 1 if needs_grad[n.args[1]] else 0  # neg
    if op == "linear":
        return (2 if needs_grad[n.args[0]] else 1) + (1 if slots(graph)[n.slot].bias else 0)  # mm, mm, sum
    if op == "shortcut_a":
        return 3  # constant_pad_nd and two slice_backward
    if op == "avgpool2" and n.cin != n.cout:
        return 2  # sum over the repeats, avg_pool2d_backward
    return 1  # convolution_backward (both gradients), *_backward, threshold_backward, div (mean)


def parameter_tensors(graph: nx.DiGraph, slot: str) -> int:
    s = slots(graph)[slot]
    return 1 + (1 if s.kind in ("bn", "gn") or s.bias else 0)


# -- the model -------------------------------------------------------------------------------


@dataclass
class PassCost:
    """One pass (or a whole step) for the batch: FLOPs, bytes, kernels."""

    flops: int = 0
    bytes_unfused: int = 0
    bytes_fused: int = 0
    kernels: int = 0
    kernels_fused: int = 0

    def __add__(self, other: PassCost) -> PassCost:
        return PassCost(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.flops, self.bytes_unfused, self.bytes_fused, self.kernels, self.kernels_fused)

    def as_dict(self) -> dict[str, int]:
        keys = ("flops", "bytes_unfused", "bytes_fused", "kernels", "kernels_fused")
        return dict(zip(keys, self.as_tuple(), strict=True))


@dataclass
class Cost:
    name: str
    batch: int
    dtype: str
    forward: PassCost
    backward: PassCost
    update: PassCost
    activation_bytes: int
    activation_bytes_fused: int
    weights: int
    bandwidth: float = H200_BANDWIDTH
    peak_flops: float = H200_BF16_FLOPS
    notes: list[str] = field(default_factory=list)

    @property
    def step(self) -> PassCost:
        return self.forward + self.backward + self.update

    def floor_s(self, fused: bool) -> float:
        """The training step's floor: the larger of arithmetic time and memory time."""
        s = self.step
        return max(s.flops / self.peak_flops, (s.bytes_fused if fused else s.bytes_unfused) / self.bandwidth)

    def as_dict(self) -> dict:
        step = self.step
        return {
            "batch": self.batch,
            "dtype": self.dtype,
            "forward": self.forward.as_dict(),
            "backward": self.backward.as_dict(),
            "update": self.update.as_dict(),
            "step": step.as_dict(),
            "per_image": {
                "forward_flops": self.forward.flops // self.batch,
                "step_flops": step.flops // self.batch,
                "step_bytes_unfused": step.bytes_unfused / self.batch,
                "step_bytes_fused": step.bytes_fused / self.batch,
                "activation_bytes": self.activation_bytes / self.batch,
                "activation_bytes_fused": self.activation_bytes_fused / self.batch,
            },
            "activation_bytes": self.activation_bytes,
            "activation_bytes_fused": self.activation_bytes_fused,
            "bandwidth_Bps": self.bandwidth,
            "peak_flops": self.peak_flops,
            "floor_ms": {"unfused": 1e3 * self.floor_s(False), "fused": 1e3 * self.floor_s(True)},
        }


def cost(
    graph: nx.DiGraph,
    batch: int = 128,
    dtype: str = "bf16",
    input_size: int | tuple[int, int] | None = None,
    bandwidth: float = H200_BANDWIDTH,
    peak_flops: float | None = None,
) -> Cost:
    """The cost of a forward pass and a training step of ``graph`` for ``batch`` images."""
    if dtype not in DTYPES:
        raise SpecError(f"unknown dtype {dtype!r}", hint=f"use one of {', '.join(DTYPES)}")
    size = input_size if input_size is not None else graph.graph["spec"].input.shape
    g = _Graph(graph, size, batch, DTYPES[dtype])
    forward, backward = g.forward(), g.backward()
    update = g.update()
    if dtype == "bf16":
        casts = g.casts()
        forward, backward = forward + casts + g.io_casts(backward=False), backward + casts + g.io_casts(backward=True)
    rate = peak_flops if peak_flops is not None else (H200_BF16_FLOPS if dtype == "bf16" else H200_TF32_FLOPS)
    return Cost(
        graph.graph["spec"].name,
        batch,
        dtype,
        forward,
        backward,
        update,
        g.activations(fused=False),
        g.activations(fused=True),
        sum(s.weights for s in slots(graph).values()),
        bandwidth,
        rate,
    )


class _Graph:
    """The graph with per-node sizes, readers, gradient flags and the fused grouping."""

    def __init__(self, graph: nx.DiGraph, size, batch: int, itemsize: int) -> None:
        self.graph, self.batch, self.e = graph, batch, itemsize
        self.nodes = {i: node(graph, i) for i in graph.nodes}
        shapes = spatial_sizes(graph, size)
        self.elems = {i: c * h * w for i, (c, h, w) in shapes.items()}
        self.shapes = shapes
        self.readers: dict[str, list[str]] = {i: [] for i in self.nodes}
        for i, n in self.nodes.items():
            for a in n.args:
                self.readers[a].append(i)
        self.needs_grad: dict[str, bool] = {}
        for i, n in self.nodes.items():
            self.needs_grad[i] = passes_gradient(n) and (has_weights(n) or any(self.needs_grad[a] for a in n.args))
        self.kept = {i: not (is_elementwise(n) and len(self.readers[i]) == 1) for i, n in self.nodes.items()}

    # sizes in bytes for the whole batch
    def act(self, i: str) -> int:
        return self.elems[i] * self.batch * self.e

    def read(self, i: str, a: str) -> int:
        """Bytes node ``i`` reads of value ``a`` in the forward pass: all of it, except that the
        option-A shortcut reads only the pixels it keeps (every other row and column)."""
        if self.nodes[i].op == "shortcut_a":
            _, h, w = self.shapes[i]
            return self.shapes[a][0] * h * w * self.batch * self.e
        return self.act(a)

    def wbytes(self, n: Node, itemsize: int | None = None) -> int:
        return slots(self.graph)[n.slot].weights * (itemsize or self.e) if n.slot else 0

    def macs(self, i: str) -> int:
        n = self.nodes[i]
        if n.op == "conv":
            s = slots(self.graph)[n.slot]
            _, h, w = self.shapes[i]
            return s.cout * (s.cin // s.groups) * s.kernel**2 * h * w * self.batch
        if n.op == "linear":
            return n.cin * n.cout * self.batch
        return 0

    def sources(self, i: str) -> list[str]:
        """The written values a reader of ``i`` reads (``i`` itself unless it is fused away)."""
        if self.kept[i]:
            return [i]
        return [s for a in self.nodes[i].args for s in self.sources(a)]

    def _compute(self):
        return [i for i, n in self.nodes.items() if n.op not in ("input", "output")]

    def forward(self) -> PassCost:
        c = PassCost()
        for i in self._compute():
            n = self.nodes[i]
            c.flops += 2 * self.macs(i)
            c.kernels += forward_kernels(n, self.graph)
            c.bytes_unfused += sum(self.read(i, a) for a in n.args) + self.wbytes(n) + self.act(i)
            if self.kept[i]:
                c.kernels_fused += 1
                reads = [(a, s) for a in n.args for s in self.sources(a)]
                c.bytes_fused += sum(self.read(i, s) for _, s in reads) + self._cone_weights(i) + self.act(i)
        loss = self._loss_elems()
        c.kernels += 2  # log_softmax, nll_loss
        c.kernels_fused += 1
        c.bytes_unfused += 3 * loss * self.e + 8 * self.batch  # log_softmax; nll reads it and the labels
        c.bytes_fused += loss * self.e
        return c

    def _cone_weights(self, i: str) -> int:
        """Weights read by the kernel that writes ``i``: its own and those of the ops fused into it."""
        n = self.nodes[i]
        return self.wbytes(n) + sum(self._cone_weights(a) for a in n.args if not self.kept[a])

    def _loss_elems(self) -> int:
        out = next(i for i, n in self.nodes.items() if n.op == "output")
        return self.elems[out] * self.batch

    def backward(self) -> PassCost:
        c = PassCost()
        table = slots(self.graph)
        for i in self._compute():
            n = self.nodes[i]
            if not self.needs_grad[i]:
                continue
            grads_in = [a for a in n.args if self.needs_grad[a]] if passes_gradient(n) else []
            macs = self.macs(i)
            c.flops += 2 * macs * (len(grads_in) + (1 if has_weights(n) and macs else 0))
            c.kernels += backward_kernels(n, self.graph, self.needs_grad)
            c.bytes_unfused += self._backward_bytes(i, grads_in)
            if self.kept[i]:
                c.kernels_fused += 2 if n.op in ("conv", "linear") and grads_in else 1
                c.bytes_fused += self._fused_backward_bytes(i)
        for i in self.nodes:  # gradient accumulation where a value has several readers
            if not self.needs_grad[i]:
                continue
            k = sum(1 for r in self.readers[i] if passes_gradient(self.nodes[r]))
            if k > 1:
                c.kernels += k - 1
                c.bytes_unfused += 3 * (k - 1) * self.act(i)
                if self.kept[i]:
                    c.bytes_fused += 2 * (k - 1) * self.act(i)
        uses: dict[str, int] = {}
        for n in self.nodes.values():
            if n.slot:
                uses[n.slot] = uses.get(n.slot, 0) + 1
        for slot, k in uses.items():  # a shared weight's gradients are summed
            w = table[slot].weights * self.e
            c.kernels += (k - 1) * parameter_tensors(self.graph, slot)
            c.bytes_unfused += 3 * (k - 1) * w
            c.bytes_fused += 2 * (k - 1) * w
        loss = self._loss_elems()
        c.kernels += 3  # ones_like, nll_loss_backward, log_softmax_backward
        c.kernels_fused += 1
        c.bytes_unfused += 3 * loss * self.e
        c.bytes_fused += 2 * loss * self.e
        return c

    def _backward_bytes(self, i: str, grads_in: list[str]) -> int:
        """Unfused: read the output's gradient and what the op saved; write each operand's gradient."""
        n = self.nodes[i]
        dy, w = self.act(i), self.wbytes(n)
        if n.op in ("conv", "linear"):
            x = self.act(n.args[0])
            total = (dy + x + w) if has_weights(n) else 0  # weight gradient: reads dy and x, writes dw
            return total + sum(dy + w + self.act(a) for a in grads_in)
        if n.op == "add":
            return 0
        if n.op == "sub":
            return 2 * dy if grads_in and grads_in[-1] == n.args[1] else 0
        saved = self.act(n.args[0]) if n.op in _SAVES_INPUT else dy if n.op in _SAVES_OUTPUT else 0
        return dy + saved + sum(self.act(a) for a in grads_in) + 2 * w

    def _fused_backward_bytes(self, i: str) -> int:
        """Fused: the kernel that wrote ``i`` reads its gradient and its sources, writes their gradients."""
        n = self.nodes[i]
        srcs = [s for a in n.args for s in self.sources(a)]
        grads = [s for s in srcs if self.needs_grad[s]]
        w = 2 * self._cone_weights(i)
        reads = self.act(i) + sum(self.act(s) for s in srcs)
        if n.op in ("conv", "linear") and grads:
            reads += self.act(i) + sum(self.act(s) for s in srcs)  # a second kernel: the weight gradient
        return reads + sum(self.act(s) for s in grads) + w

    def update(self) -> PassCost:
        """SGD with momentum and weight decay on float32 weights: per parameter tensor ``g + wd p``,
        ``buf * m``, ``buf + g``, ``p - lr buf`` (for-loop implementation); fused: one pass."""
        c = PassCost()
        used = {n.slot for n in self.nodes.values() if n.slot}
        table = slots(self.graph)
        for slot in used:
            w = table[slot].weights * 4
            c.kernels += 4 * parameter_tensors(self.graph, slot)
            c.bytes_unfused += 11 * w
            c.bytes_fused += 5 * w
        c.kernels_fused = 1
        return c

    def casts(self) -> PassCost:
        """bf16 autocast: each weight tensor cast to bf16 once per forward (cached), and its gradient
        cast back to float32 once per backward: read 4 bytes and write 2 per weight, and back."""
        c = PassCost()
        used = {n.slot for n in self.nodes.values() if n.slot and n.op in ("conv", "linear")}
        table = slots(self.graph)
        for slot in used:
            c.kernels += parameter_tensors(self.graph, slot)
            c.bytes_unfused += 6 * table[slot].weights
        c.bytes_fused = c.bytes_unfused
        return c

    def io_casts(self, backward: bool) -> PassCost:
        """bf16 autocast: the float32 image is cast to bf16 (forward only: it has no gradient), and the
        logits to float32 for the loss (and their gradient back)."""
        inp = next(i for i, n in self.nodes.items() if n.op == "input")
        loss = self._loss_elems()
        image = 0 if backward else 6 * self.elems[inp] * self.batch
        return PassCost(0, image + 6 * loss, image + 6 * loss, 1 if backward else 2, 0)

    def activations(self, fused: bool) -> int:
        """Bytes of the distinct tensors the forward pass keeps for the backward pass."""
        keep: set[str] = set()
        for i, n in self.nodes.items():
            if not self.needs_grad[i]:
                continue
            if n.op in _SAVES_INPUT:
                keep.update(n.args)
            if n.op in _SAVES_OUTPUT:
                keep.add(i)
        if fused:
            keep = {s for i in keep for s in self.sources(i)}
        return sum(self.act(i) for i in keep if self.nodes[i].op != "input")
