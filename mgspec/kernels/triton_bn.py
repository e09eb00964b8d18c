"""Triton kernels for training-mode BatchNorm fused with its activation and a residual add
(:mod:`mgspec.kernels.fused_bn`): ``y = act((x - mean) * rstd * w + b) (+ r)``.

Four kernels, each one pass over its tensors, addressed through (N, C, S = H*W) strides so
channels_last and contiguous run without copies:

- ``stats``: per block of rows, per channel, the sum and sum of squares of ``x - pivot``
  (the block's first row: shifted sums stay exact enough for any mean), in float32;
  torch combines the blocks (Chan's formula) into the batch mean and biased variance;
- ``apply``: normalise, scale, shift, activate, add the residual, store: one read of x (and
  r), one write of y, where eager PyTorch runs BatchNorm, the activation and the add apart;
- ``backward_reduce``: per block, the sums of ``g = dy * act'(z)`` and ``g * xhat``
  (torch adds the blocks: the bias and weight gradients);
- ``backward_input``: ``dx = w * rstd * (g - mean(g) - xhat * mean(g * xhat))``.

Activations: 0 none, 1 relu, 2 silu, 3 gelu (erf). Import only where triton is importable.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mgspec.kernels._triton import layout

ACTS = {"none": 0, "relu": 1, "silu": 2, "gelu": 3}
BLOCK_M = 64
BLOCK_C = 32
REDUCE_ROWS = 1024  # rows one reduction program covers


@triton.jit
def _act(z, ACT: tl.constexpr):
    if ACT == 1:
        z = tl.maximum(z, 0.0)
    elif ACT == 2:
        z = z * tl.sigmoid(z)
    elif ACT == 3:
        z = 0.5 * z * (1.0 + tl.math.erf(z * 0.7071067811865476))
    return z


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    if ACT == 1:
        d = tl.where(z > 0.0, 1.0, 0.0)
    elif ACT == 2:
        s = tl.sigmoid(z)
        d = s * (1.0 + z * (1.0 - s))
    elif ACT == 3:
        d = 0.5 * (1.0 + tl.math.erf(z * 0.7071067811865476)) + z * 0.3989422804014327 * tl.exp(-0.5 * z * z)
    else:
        d = tl.full(z.shape, 1.0, tl.float32)
    return d


@triton.jit
def _stats_kernel(x, part, M, S, C, sxn, sxc, sxs, ROWS: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr):
    block = tl.program_id(0)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    mask_c = c < C
    c64 = c.to(tl.int64)
    first = block * ROWS
    n0, s0 = first // S, first % S
    pivot = tl.load(x + n0.to(tl.int64) * sxn + c64 * sxc + s0.to(tl.int64) * sxs, mask=mask_c, other=0.0)
    pivot = pivot.to(tl.float32)
    s1 = tl.zeros((BC,), dtype=tl.float32)
    s2 = tl.zeros((BC,), dtype=tl.float32)
    for start in range(0, ROWS, BM):
        m = first + start + tl.arange(0, BM)
        mask = (m < M)[:, None] & mask_c[None, :]
        n, s = (m // S).to(tl.int64), (m % S).to(tl.int64)
        v = tl.load(x + n[:, None] * sxn + c64[None, :] * sxc + s[:, None] * sxs, mask=mask, other=0.0)
        d = tl.where(mask, v.to(tl.float32) - pivot[None, :], 0.0)
        s1 += tl.sum(d, axis=0)
        s2 += tl.sum(d * d, axis=0)
    base = part + block * 3 * C + c
    tl.store(base, pivot, mask=mask_c)
    tl.store(base + C, s1, mask=mask_c)
    tl.store(base + 2 * C, s2, mask=mask_c)


@triton.jit
def _apply_kernel(x, r, y, mean, rstd, w, b, M, S, C, sxn, sxc, sxs, srn, src, srs, syn, syc, sys,
                  HAS_RES: tl.constexpr, ACT: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    m = tl.program_id(0) * BM + tl.arange(0, BM)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    mask_c = c < C
    mask = (m < M)[:, None] & mask_c[None, :]
    n, s = (m // S).to(tl.int64)[:, None], (m % S).to(tl.int64)[:, None]
    c64 = c.to(tl.int64)[None, :]
    scale = tl.load(rstd + c, mask=mask_c, other=0.0) * tl.load(w + c, mask=mask_c, other=0.0).to(tl.float32)
    shift = tl.load(b + c, mask=mask_c, other=0.0).to(tl.float32) - tl.load(mean + c, mask=mask_c, other=0.0) * scale
    v = tl.load(x + n * sxn + c64 * sxc + s * sxs, mask=mask, other=0.0).to(tl.float32)
    out = _act(v * scale[None, :] + shift[None, :], ACT)
    if HAS_RES:
        out += tl.load(r + n * srn + c64 * src + s * srs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y + n * syn + c64 * syc + s * sys, out.to(y.dtype.element_ty), mask=mask)


@triton.jit
def _grad_z(x, gy, mean, rstd, w, b, n, s, c, mask, mask_c, sxn, sxc, sxs, sgn, sgc, sgs, ACT: tl.constexpr):
    """g = dy * act'(z) and xhat for one tile."""
    c64 = c.to(tl.int64)[None, :]
    mu = tl.load(mean + c, mask=mask_c, other=0.0)
    inv = tl.load(rstd + c, mask=mask_c, other=0.0)
    wv = tl.load(w + c, mask=mask_c, other=0.0).to(tl.float32)
    bv = tl.load(b + c, mask=mask_c, other=0.0).to(tl.float32)
    v = tl.load(x + n * sxn + c64 * sxc + s * sxs, mask=mask, other=0.0).to(tl.float32)
    xhat = (v - mu[None, :]) * inv[None, :]
    g = tl.load(gy + n * sgn + c64 * sgc + s * sgs, mask=mask, other=0.0).to(tl.float32)
    g = g * _act_grad(xhat * wv[None, :] + bv[None, :], ACT)
    return tl.where(mask, g, 0.0), xhat


@triton.jit
def _backward_reduce_kernel(x, gy, mean, rstd, w, b, part, M, S, C, sxn, sxc, sxs, sgn, sgc, sgs,
                            ACT: tl.constexpr, ROWS: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    block = tl.program_id(0)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    mask_c = c < C
    sum_g = tl.zeros((BC,), dtype=tl.float32)
    sum_gx = tl.zeros((BC,), dtype=tl.float32)
    for start in range(0, ROWS, BM):
        m = block * ROWS + start + tl.arange(0, BM)
        mask = (m < M)[:, None] & mask_c[None, :]
        n, s = (m // S).to(tl.int64)[:, None], (m % S).to(tl.int64)[:, None]
        g, xhat = _grad_z(x, gy, mean, rstd, w, b, n, s, c, mask, mask_c, sxn, sxc, sxs, sgn, sgc, sgs, ACT)
        sum_g += tl.sum(g, axis=0)
        sum_gx += tl.sum(g * xhat, axis=0)
    base = part + block * 2 * C + c
    tl.store(base, sum_g, mask=mask_c)
    tl.store(base + C, sum_gx, mask=mask_c)


@triton.jit
def _backward_input_kernel(x, gy, dx, mean, rstd, w, b, sums, M, S, C, sxn, sxc, sxs, sgn, sgc, sgs, sdn, sdc, sds,
                           ACT: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    m = tl.program_id(0) * BM + tl.arange(0, BM)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    mask_c = c < C
    mask = (m < M)[:, None] & mask_c[None, :]
    n, s = (m // S).to(tl.int64)[:, None], (m % S).to(tl.int64)[:, None]
    g, xhat = _grad_z(x, gy, mean, rstd, w, b, n, s, c, mask, mask_c, sxn, sxc, sxs, sgn, sgc, sgs, ACT)
    mean_g = tl.load(sums + c, mask=mask_c, other=0.0) / M
    mean_gx = tl.load(sums + C + c, mask=mask_c, other=0.0) / M
    scale = tl.load(rstd + c, mask=mask_c, other=0.0) * tl.load(w + c, mask=mask_c, other=0.0).to(tl.float32)
    out = scale[None, :] * (g - mean_g[None, :] - xhat * mean_gx[None, :])
    tl.store(dx + n * sdn + c.to(tl.int64)[None, :] * sdc + s * sds, out.to(dx.dtype.element_ty), mask=mask)


def _grid(rows: int, channels: int) -> tuple[int, int]:
    return triton.cdiv(rows, BLOCK_M), triton.cdiv(channels, BLOCK_C)


def _rows(x: torch.Tensor) -> tuple[int, int, int]:
    n, c, h, w = x.shape
    return n * h * w, h * w, c


def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and biased variance of ``x`` (N, C, H, W), float32."""
    x, _, sx = layout(x)
    m, s, c = _rows(x)
    blocks = triton.cdiv(m, REDUCE_ROWS)
    part = torch.empty((blocks, 3, c), dtype=torch.float32, device=x.device)
    _stats_kernel[(blocks, triton.cdiv(c, BLOCK_C))](x, part, m, s, c, *sx, ROWS=REDUCE_ROWS, BM=BLOCK_M, BC=BLOCK_C)
    pivot, s1, s2 = part.unbind(1)
    count = torch.full((blocks, 1), float(REDUCE_ROWS), dtype=torch.float32, device=x.device)
    count[-1] = m - (blocks - 1) * REDUCE_ROWS
    block_mean = pivot + s1 / count
    block_m2 = s2 - s1 * s1 / count
    mean = (count * block_mean).sum(0) / m
    var = (block_m2.sum(0) + (count * (block_mean - mean) ** 2).sum(0)) / m
    return mean, var.clamp_min(0.0)


def apply(x, residual, mean, rstd, weight, bias, act: str, dtype: torch.dtype) -> torch.Tensor:
    """``act((x - mean) * rstd * weight + bias) (+ residual)`` in ``x``'s layout and ``dtype``."""
    x, fmt, sx = layout(x)
    m, s, c = _rows(x)
    y = torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=fmt)
    _, _, sy = layout(y)
    has_residual = residual is not None
    residual, _, sr = layout(residual) if has_residual else (x, None, sx)
    _apply_kernel[_grid(m, c)](
        x, residual, y, mean, rstd, weight, bias, m, s, c, *sx, *sr, *sy,
        HAS_RES=has_residual, ACT=ACTS[act], BM=BLOCK_M, BC=BLOCK_C,
    )  # fmt: skip
    return y


def backward(grad, x, mean, rstd, weight, bias, act: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of x, weight and bias (training-mode BatchNorm: through the batch statistics)."""
    x, fmt, sx = layout(x)
    grad, _, sg = layout(grad)
    m, s, c = _rows(x)
    blocks = triton.cdiv(m, REDUCE_ROWS)
    part = torch.empty((blocks, 2, c), dtype=torch.float32, device=x.device)
    _backward_reduce_kernel[(blocks, triton.cdiv(c, BLOCK_C))](
        x, grad, mean, rstd, weight, bias, part, m, s, c, *sx, *sg,
        ACT=ACTS[act], ROWS=REDUCE_ROWS, BM=BLOCK_M, BC=BLOCK_C,
    )  # fmt: skip
    sums = part.sum(0)  # (2, C): sum of g, sum of g * xhat
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    _, _, sd = layout(dx)
    _backward_input_kernel[_grid(m, c)](
        x, grad, dx, mean, rstd, weight, bias, sums, m, s, c, *sx, *sg, *sd,
        ACT=ACTS[act], BM=BLOCK_M, BC=BLOCK_C,
    )  # fmt: skip
    return dx, sums[1].to(weight.dtype, copy=True), sums[0].to(bias.dtype, copy=True)  # no aliased outputs
