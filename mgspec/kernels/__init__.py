"""Hand-written CPU kernels: the grouped 3x3 convolution MGiaD is made of.

oneDNN's grouped 3x3 convolutions run several times below its dense ones (PyTorch issue
70954), so MGiaD's tenth of the MACs did not become a tenth of the time. This package has a
C++ kernel for exactly the convolution MGiaD and grouped MgNet use: 3x3, stride 1, padding 1,
no bias, ``in_channels == out_channels``, small group sizes, channels_last; forward, input
gradient and weight gradient (``gconv3x3.cpp`` explains the vector layout).

Contract
--------
``grouped_conv3x3(x, weight, groups)``
    Equals ``F.conv2d(x, weight, padding=1, groups=groups)`` (float32 tolerance) for every
    input, on every device, with autograd, ``torch.compile`` and ``torch.export``: it is the
    custom op ``torch.ops.mgspec.grouped_conv3x3``. The output is channels_last. On CPU with
    the kernel built it runs the kernel (float32: vector code; float64: scalar loops);
    otherwise (CUDA, other dtypes, kernel disabled or unbuildable) it calls ``F.conv2d``
    (cuDNN on CUDA: there is no GPU version yet).
``available()``
    Whether the kernel library is loaded, compiling it on the first call (one line on
    stderr, about 20 s, cached per user; see ``_build``). ``False``, never an exception,
    without a C++ compiler, after a failed build, or when disabled.
``enabled()`` / ``set_enabled(flag)``
    The process-wide switch; ``MGSPEC_KERNELS=0`` in the environment turns it off from the
    start. Disabled, nothing is compiled and every path is plain ``F.conv2d``.
``eligible(module)``
    An ``nn.Conv2d`` (exactly that class) the kernel computes: 3x3, stride 1, padding 1,
    dilation 1, no bias, groups > 1, in == out channels, group size in :data:`GROUP_SIZES`.
``wins(channels, group_size, height, width, dtype=float32, device="cpu")``
    Whether the kernel beats ``F.conv2d`` for that shape on CPU, from the measured table
    in docs/performance.md (``benchmarks/gconv.py``).
``use_kernel(model, only_where_faster=True) -> int``
    Switches the eligible convolutions of a built model (runtime ``GraphModel``, generated
    model or any ``nn.Module``) to the kernel, in place, and returns how many. The modules
    stay the same objects (their class becomes :class:`KernelConv2d`, a subclass of
    ``nn.Conv2d``), so parameters, state_dict keys, weight sharing, optimizers and the
    runtime model's op program are untouched. Returns 0 when the kernel is unavailable or
    disabled. A switched module uses the kernel only for CPU float32 channels_last inputs
    whose shape :func:`wins` (or always, with ``only_where_faster=False``); anything else
    goes through ``nn.Conv2d``'s own path. ``restore(model)`` switches back.

For a pass or build option: call ``use_kernel(model)`` after building (and after
``.to(memory_format=torch.channels_last)``, before ``torch.compile``). Models for ONNX export
must not use the kernel (``torch.onnx`` knows nothing of the custom op): ``restore`` first.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from mgspec.kernels import _build
from mgspec.passes import kernels as _table

__all__ = [
    "GROUP_SIZES",
    "KernelConv2d",
    "available",
    "eligible",
    "enabled",
    "grouped_conv3x3",
    "isa",
    "restore",
    "set_enabled",
    "use_kernel",
    "wins",
]

GROUP_SIZES = _table.GROUP_SIZES  # the group sizes the vector code covers

_enabled = os.environ.get("MGSPEC_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


def enabled() -> bool:
    return _enabled


def set_enabled(flag: bool) -> None:
    """Turn the kernels on or off for this process (off: everything is ``F.conv2d``)."""
    global _enabled
    _enabled = bool(flag)


def available() -> bool:
    """Enabled and loaded (building the library on the first call)."""
    return _enabled and _build.load() is not None


def isa() -> str | None:
    """The instruction set the kernel runs with here (``avx512``, ``avx2`` or ``scalar``), or None."""
    return str(torch.ops.mgspec_gconv.isa()) if available() else None


def _kernel_ok(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and available()


# ---------------------------------------------------------------- the custom ops


@torch.library.custom_op("mgspec::grouped_conv3x3", mutates_args=())
def _forward(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    if _kernel_ok(x):
        return torch.ops.mgspec_gconv.forward(x, weight, groups)
    return F.conv2d(x, weight, padding=1, groups=groups).contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("mgspec::grouped_conv3x3_backward_input", mutates_args=())
def _backward_input(grad_out: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    if _kernel_ok(grad_out):
        return torch.ops.mgspec_gconv.backward_input(grad_out, weight, groups)
    grad = torch.nn.grad.conv2d_input(grad_out.shape, weight, grad_out, padding=1, groups=groups)
    return grad.contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("mgspec::grouped_conv3x3_backward_weight", mutates_args=())
def _backward_weight(x: torch.Tensor, grad_out: torch.Tensor, groups: int) -> torch.Tensor:
    if _kernel_ok(x):
        return torch.ops.mgspec_gconv.backward_weight(x, grad_out, groups)
    shape = (x.shape[1], x.shape[1] // groups, 3, 3)
    return torch.nn.grad.conv2d_weight(x, shape, grad_out, padding=1, groups=groups).contiguous()


@_forward.register_fake
def _(x, weight, groups):
    return torch.empty_like(x, memory_format=torch.channels_last)


@_backward_input.register_fake
def _(grad_out, weight, groups):
    return torch.empty_like(grad_out, memory_format=torch.channels_last)


@_backward_weight.register_fake
def _(x, grad_out, groups):
    return x.new_empty((x.shape[1], x.shape[1] // groups, 3, 3))


def _setup_context(ctx, inputs, output):
    x, weight, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.groups = groups


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    grad_x = grad_w = None
    if ctx.needs_input_grad[0]:
        grad_x = _backward_input(grad_out, weight, ctx.groups)
    if ctx.needs_input_grad[1]:
        grad_w = _backward_weight(x, grad_out, ctx.groups)
    return grad_x, grad_w, None


_forward.register_autograd(_backward, setup_context=_setup_context)


def grouped_conv3x3(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=1, groups=groups)`` for ``weight`` of shape (C, C/groups, 3, 3)."""
    return torch.ops.mgspec.grouped_conv3x3(x, weight, groups)


# ---------------------------------------------------------------- where it pays


def wins(
    channels: int,
    group_size: int,
    height: int,
    width: int,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> bool:
    """Whether the kernel is faster than ``F.conv2d`` for this shape (the measured table in
    :mod:`mgspec.passes.kernels`, which the kernel-selection pass reads too)."""
    if torch.device(device).type != "cpu" or dtype != torch.float32:
        return False
    return _table.wins(channels, group_size, height, width)


def eligible(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` the kernel computes: the kernel-selection pass's rule
    (:func:`mgspec.passes.kernels.computes`), plus what a module adds (padding, dilation)."""
    m = module
    return (
        type(m) is nn.Conv2d
        and m.kernel_size[0] == m.kernel_size[1]
        and m.stride[0] == m.stride[1]
        and m.padding == (1, 1)
        and m.dilation == (1, 1)
        and m.padding_mode == "zeros"
        and _table.computes(
            "conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.groups, m.bias is not None
        )
    )


class KernelConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that runs :func:`grouped_conv3x3` where it pays; made by :func:`use_kernel`."""

    only_where_faster: bool = True

    def _conv_forward(self, input, weight, bias):  # noqa: A002 (nn.Conv2d's signature)
        if (
            _enabled
            and input.device.type == "cpu"
            and input.dtype == torch.float32
            and input.dim() == 4
            and input.is_contiguous(memory_format=torch.channels_last)
            and (
                not self.only_where_faster
                or wins(self.in_channels, self.in_channels // self.groups, input.shape[2], input.shape[3])
            )
        ):
            return torch.ops.mgspec.grouped_conv3x3(input, weight, self.groups)
        return super()._conv_forward(input, weight, bias)


def use_kernel(model: nn.Module, only_where_faster: bool = True) -> int:
    """Switch the eligible convolutions of ``model`` to the kernel in place; how many were switched."""
    if not available():
        return 0
    switched = 0
    for module in model.modules():
        if eligible(module):
            module.__class__ = KernelConv2d
            if not only_where_faster:
                module.only_where_faster = False
            switched += 1
    return switched


def restore(model: nn.Module) -> int:
    """Undo :func:`use_kernel`: every :class:`KernelConv2d` becomes a plain ``nn.Conv2d`` again."""
    restored = 0
    for module in model.modules():
        if type(module) is KernelConv2d:
            module.__dict__.pop("only_where_faster", None)
            module.__class__ = nn.Conv2d
            restored += 1
    return restored


from mgspec.kernels import flops as _flops  # noqa: E402,F401 (the custom ops' flop formulas)
