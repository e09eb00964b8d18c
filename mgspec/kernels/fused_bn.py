"""BatchNorm (training mode) + activation (+ residual add) as one fused op.

``batch_norm_act(bn, x, act, residual=None, residual_first=True)`` equals
``residual + act(bn(x))`` (or ``act(bn(x)) + residual``) for an ``nn.BatchNorm2d`` ``bn``, in
values, in the gradients of x, weight, bias and the residual, and in the running statistics
(``num_batches_tracked``, the running mean, and the running variance from the unbiased batch
variance, with ``bn.momentum``), exactly as nn.BatchNorm2d updates them.

Where the Triton kernels run (CUDA with triton importable, or the CPU under
``TRITON_INTERPRET=1``: :func:`mgspec.kernels._triton.runs_on`) and the module is in training
mode with affine parameters, running statistics and a momentum, the forward is two passes
(:mod:`mgspec.kernels.triton_bn`: statistics, then normalise + activate + add) and the
backward two (reduction, then input gradient), through the custom ops
``mgspec::batch_norm_act`` and ``mgspec::batch_norm_act_backward`` (fake implementations and
autograd registered, so ``torch.compile`` and CUDA-graph capture work). Everywhere else
(CPU, evaluation mode, other module settings, kernels disabled) it is the PyTorch
composition itself, so results there are bitwise those of the unfused model.

The ops also run without triton (their PyTorch bodies) so that they can be checked on any
machine. BatchNorm has no flop formula in torch's counter, and these ops have none either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mgspec.kernels import _triton

ACTIVATIONS = {"none": lambda z: z, "relu": F.relu, "silu": F.silu, "gelu": F.gelu}

__all__ = ["ACTIVATIONS", "batch_norm_act", "fusable"]


def _acc(x: torch.Tensor) -> torch.dtype:
    """The dtype statistics and sums are computed in: float32, or float64 for float64."""
    return torch.promote_types(x.dtype, torch.float32)


def _stats_torch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(x.to(_acc(x)), dim=(0, 2, 3), correction=0)
    return mean, var


def _act_grad(z: torch.Tensor, act: str) -> torch.Tensor:
    """The activation's derivative at ``z`` (gelu: the exact, erf form)."""
    if act == "relu":
        return (z > 0).to(z.dtype)
    if act == "silu":
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s))
    if act == "gelu":
        return 0.5 * (1 + torch.erf(z * 0.7071067811865476)) + z * 0.3989422804014327 * torch.exp(-0.5 * z * z)
    return torch.ones_like(z)


def _shape(t: torch.Tensor) -> torch.Tensor:
    return t.view(1, -1, 1, 1)


@torch.library.custom_op("mgspec::batch_norm_act", mutates_args=())
def _forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None, eps: float, act: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, batch mean, biased batch variance); mean and variance in float32 (float64 for float64)."""
    dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    if _triton.runs_on(x):
        from mgspec.kernels import triton_bn

        mean, var = triton_bn.stats(x)
        rstd = torch.rsqrt(var + eps)
        return triton_bn.apply(x, residual, mean, rstd, weight, bias, act, dtype), mean, var
    mean, var = _stats_torch(x)
    rstd = torch.rsqrt(var + eps)
    acc = _acc(x)
    z = (x.to(acc) - _shape(mean)) * _shape(rstd * weight.to(acc)) + _shape(bias.to(acc))
    y = ACTIVATIONS[act](z)
    if residual is not None:
        y = y + residual.to(acc)
    return y.to(dtype).contiguous(memory_format=_triton.layout(x)[1]), mean, var


@torch.library.custom_op("mgspec::batch_norm_act_backward", mutates_args=())
def _backward_op(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    eps: float,
    act: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of x, weight and bias through the batch statistics."""
    rstd = torch.rsqrt(var + eps)
    if _triton.runs_on(x):
        from mgspec.kernels import triton_bn

        return triton_bn.backward(grad, x, mean, rstd, weight, bias, act)
    acc = _acc(x)
    xhat = (x.to(acc) - _shape(mean)) * _shape(rstd)
    g = grad.to(acc) * _act_grad(xhat * _shape(weight.to(acc)) + _shape(bias.to(acc)), act)
    sum_g, sum_gx = g.sum((0, 2, 3)), (g * xhat).sum((0, 2, 3))
    count = x.numel() // x.shape[1]
    dx = _shape(rstd * weight.to(acc)) * (g - _shape(sum_g / count) - xhat * _shape(sum_gx / count))
    fmt = _triton.layout(x)[1]
    return dx.to(x.dtype).contiguous(memory_format=fmt), sum_gx.to(weight.dtype), sum_g.to(bias.dtype)


@_forward.register_fake
def _(x, weight, bias, residual, eps, act):
    dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    y = torch.empty_like(x, dtype=dtype, memory_format=_triton.layout(x)[1])
    stat = x.new_empty((x.shape[1],), dtype=_acc(x))
    return y, stat, torch.empty_like(stat)


@_backward_op.register_fake
def _(grad, x, weight, bias, mean, var, eps, act):
    return torch.empty_like(x, memory_format=_triton.layout(x)[1]), torch.empty_like(weight), torch.empty_like(bias)


def _setup_context(ctx, inputs, output):
    x, weight, bias, residual, eps, act = inputs
    _, mean, var = output
    ctx.save_for_backward(x, weight, bias, mean, var)
    ctx.eps, ctx.act = eps, act
    ctx.residual_dtype = None if residual is None else residual.dtype
    ctx.mark_non_differentiable(mean, var)


def _backward(ctx, grad, _grad_mean, _grad_var):
    x, weight, bias, mean, var = ctx.saved_tensors
    dx, dw, db = _backward_op(grad, x, weight, bias, mean, var, ctx.eps, ctx.act)
    dr = None if ctx.residual_dtype is None else grad.to(ctx.residual_dtype)
    return dx, dw, db, dr, None, None


_forward.register_autograd(_backward, setup_context=_setup_context)


def fusable(bn: nn.Module, x: torch.Tensor) -> bool:
    """Whether the fused kernels compute ``bn`` for ``x`` (else the PyTorch composition runs)."""
    return (
        type(bn) is nn.BatchNorm2d
        and bn.training
        and bn.affine
        and bn.track_running_stats
        and bn.momentum is not None
        and x.dim() == 4
        and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
        and x.numel() > x.shape[1]  # more than one value per channel (else torch's own error)
        and _triton.runs_on(x)
    )


def batch_norm_act(
    bn: nn.BatchNorm2d,
    x: torch.Tensor,
    act: str,
    residual: torch.Tensor | None = None,
    residual_first: bool = True,
) -> torch.Tensor:
    """``residual + act(bn(x))`` (``act(bn(x)) + residual`` without ``residual_first``)."""
    if not fusable(bn, x):
        y = ACTIVATIONS[act](bn(x))
        if residual is None:
            return y
        return residual + y if residual_first else y + residual
    y, mean, var = torch.ops.mgspec.batch_norm_act(x, bn.weight, bn.bias, residual, bn.eps, act)
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        count = x.numel() // x.shape[1]
        f = bn.momentum
        bn.running_mean.mul_(1 - f).add_(mean.to(bn.running_mean.dtype), alpha=f)
        bn.running_var.mul_(1 - f).add_(var.to(bn.running_var.dtype), alpha=f * count / (count - 1))
    return y
