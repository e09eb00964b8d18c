"""Flop formulas for mgspec's custom ops, so that ``torch.utils.flop_counter.FlopCounterMode``
counts them exactly as it counts ``aten.convolution`` and ``aten.convolution_backward`` for
the same shapes (the input gradient as a transposed convolution, the weight gradient as the
convolution of input and output gradient, groups over-counted as torch does). A model that
runs the kernels therefore counts the same FLOPs as the same model without them.

Imported by :mod:`mgspec.kernels`; registering twice is an error in torch, so this module
is the one place that registers.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import conv_flop_count, register_flop_formula

import mgspec.kernels  # noqa: F401 (defines mgspec::grouped_conv3x3*)
import mgspec.kernels.transfer  # noqa: F401 (defines mgspec::channel_transfer*)

_ops = torch.ops.mgspec


def _t(shape) -> list[int]:
    return [shape[1], shape[0], *shape[2:]]


@register_flop_formula([_ops.grouped_conv3x3, _ops.channel_transfer])
def forward_flop(x_shape, w_shape, groups, *, out_shape=None, **kwargs) -> int:
    """``aten.convolution``'s count: the forward convolution."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


@register_flop_formula([_ops.grouped_conv3x3_backward_input, _ops.channel_transfer_backward_input])
def backward_input_flop(grad_out_shape, w_shape, groups, *, out_shape=None, **kwargs) -> int:
    """``aten.convolution_backward``'s count for the input gradient (a transposed convolution)."""
    return conv_flop_count(grad_out_shape, w_shape, out_shape, transposed=True)


@register_flop_formula([_ops.grouped_conv3x3_backward_weight, _ops.channel_transfer_backward_weight])
def backward_weight_flop(x_shape, grad_out_shape, groups, *, out_shape=None, **kwargs) -> int:
    """``aten.convolution_backward``'s count for the weight gradient (conv of input and output gradient)."""
    return conv_flop_count(_t(x_shape), _t(grad_out_shape), _t(out_shape), transposed=False)
