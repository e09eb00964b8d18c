"""Channel transfers as what they are: grouped 1x1 convolutions with one or two input
channels per group (MGiaD's pairwise R_k and Pi_k, 2 inputs -> 1 output, and P_k, 1 input ->
2 outputs) are weighted sums of one or two channels per output channel.

``channel_transfer(x, weight, groups)`` equals ``F.conv2d(x, weight, groups=groups)`` for a
weight of shape (C_out, K, 1, 1) with ``K = C_in / groups`` in (1, 2), no bias, stride 1:

    y[:, o] = sum_j weight[o, j] * x[:, (o // (C_out / groups)) * K + j]

It is the custom op ``torch.ops.mgspec.channel_transfer`` with its own backward (the input
gradient as the transposed weighted sum, the weight gradient as a per-channel reduction:
never a grouped 1x1 convolution's weight gradient, which cuDNN runs at 0.5-1.3 ms a call in
bf16), fake (meta) implementations for ``torch.compile`` and flop formulas equal to
``aten.convolution``'s (:mod:`mgspec.kernels.flops`). On CUDA, with triton importable, the
three passes are Triton kernels (:mod:`mgspec.kernels.triton_transfer`); everywhere else they
are plain PyTorch arithmetic. The output keeps the input's layout (channels_last or contiguous).

:class:`TransferConv2d` is the ``nn.Conv2d`` the runtime backend builds for the slots the
kernel-selection pass marks (:data:`mgspec.passes.kernels.TRANSFER`); it runs the op while
the kernels are enabled and ``nn.Conv2d``'s own path otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mgspec.kernels import _triton
from mgspec.passes.kernels import is_transfer

__all__ = ["TransferConv2d", "channel_transfer", "eligible"]


def _fmt(x: torch.Tensor) -> torch.memory_format:
    return _triton.layout(x)[1] if x.dim() == 4 else torch.contiguous_format


def _split(x: torch.Tensor, groups: int, k: int) -> torch.Tensor:
    """(N, G*K, H, W) -> (N, G, 1, K, H, W), a view."""
    n, _, h, w = x.shape
    return x.view(n, groups, 1, k, h, w) if x.is_contiguous() else x.unflatten(1, (groups, 1, k))


def _forward_torch(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    cout, k = weight.shape[:2]
    xs = _split(x, groups, k)
    ws = weight.reshape(1, groups, cout // groups, k, 1, 1).to(x.dtype)
    y = xs[:, :, :, 0] * ws[:, :, :, 0]
    for j in range(1, k):
        y = torch.addcmul(y, xs[:, :, :, j], ws[:, :, :, j])
    return y.flatten(1, 2).contiguous(memory_format=_fmt(x))


def _backward_input_torch(grad: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    cout, k = weight.shape[:2]
    n, _, h, w = grad.shape
    gs = grad.unflatten(1, (groups, cout // groups, 1))  # (N, G, O, 1, H, W)
    ws = weight.reshape(1, groups, cout // groups, k, 1, 1).to(grad.dtype)
    gx = (gs * ws).sum(2) if cout // groups > 1 else gs[:, :, 0] * ws[:, :, 0]  # (N, G, K, H, W)
    return gx.flatten(1, 2).contiguous(memory_format=_fmt(grad))


def _backward_weight_torch(x: torch.Tensor, grad: torch.Tensor, groups: int, k: int) -> torch.Tensor:
    cout = grad.shape[1]
    xs = _split(x, groups, k)  # (N, G, 1, K, H, W)
    gs = grad.unflatten(1, (groups, cout // groups, 1))  # (N, G, O, 1, H, W)
    acc = torch.promote_types(x.dtype, torch.float32)  # bf16/fp16 accumulate in float32
    gw = (gs * xs).sum((0, 4, 5), dtype=acc)  # a reduction, never a grouped 1x1 weight gradient
    return gw.reshape(cout, k, 1, 1).to(x.dtype)


@torch.library.custom_op("mgspec::channel_transfer", mutates_args=())
def _forward(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    if _triton.runs_on(x):
        from mgspec.kernels import triton_transfer

        return triton_transfer.forward(x, weight, groups)
    return _forward_torch(x, weight, groups)


@torch.library.custom_op("mgspec::channel_transfer_backward_input", mutates_args=())
def _backward_input(grad_out: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    if _triton.runs_on(grad_out):
        from mgspec.kernels import triton_transfer

        return triton_transfer.backward_input(grad_out, weight, groups)
    return _backward_input_torch(grad_out, weight, groups)


@torch.library.custom_op("mgspec::channel_transfer_backward_weight", mutates_args=())
def _backward_weight(x: torch.Tensor, grad_out: torch.Tensor, groups: int) -> torch.Tensor:
    k = x.shape[1] // groups
    if _triton.runs_on(x):
        from mgspec.kernels import triton_transfer

        return triton_transfer.backward_weight(x, grad_out, groups)
    return _backward_weight_torch(x, grad_out, groups, k)


@_forward.register_fake
def _(x, weight, groups):
    n, _, h, w = x.shape
    return x.new_empty((n, weight.shape[0], h, w)).contiguous(memory_format=_fmt(x))


@_backward_input.register_fake
def _(grad_out, weight, groups):
    n, _, h, w = grad_out.shape
    return grad_out.new_empty((n, groups * weight.shape[1], h, w)).contiguous(memory_format=_fmt(grad_out))


@_backward_weight.register_fake
def _(x, grad_out, groups):
    return x.new_empty((grad_out.shape[1], x.shape[1] // groups, 1, 1))


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
        grad_w = _backward_weight(x, grad_out, ctx.groups).to(weight.dtype)
    return grad_x, grad_w, None


_forward.register_autograd(_backward, setup_context=_setup_context)


def channel_transfer(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``F.conv2d(x, weight, groups=groups)`` for a (C_out, 1 or 2, 1, 1) weight, as weighted sums."""
    return torch.ops.mgspec.channel_transfer(x, weight, groups)


def eligible(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` the op computes (1x1, stride 1, no padding, no bias, 1-2 inputs per group)."""
    m = module
    return (
        isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and m.stride == (1, 1)
        and m.padding == (0, 0)
        and m.dilation == (1, 1)
        and is_transfer("conv", m.in_channels, m.out_channels, 1, 1, m.groups, m.bias is not None)
    )


class TransferConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters and state_dict) that runs :func:`channel_transfer`."""

    def _conv_forward(self, input, weight, bias):  # noqa: A002 (nn.Conv2d's signature)
        from mgspec import kernels

        if kernels.enabled() and bias is None and input.dim() == 4:
            device = input.device.type
            if torch.is_autocast_enabled(device):  # what autocast does for a convolution
                dtype = torch.get_autocast_dtype(device)
                input, weight = input.to(dtype), weight.to(dtype)  # noqa: A001
            if input.dtype == weight.dtype:
                return torch.ops.mgspec.channel_transfer(input, weight, self.groups)
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
