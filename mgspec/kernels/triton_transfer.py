"""Triton kernels for the channel transfers (:mod:`mgspec.kernels.transfer`): forward, input
gradient and weight gradient of ``y[:, o] = sum_j w[o, j] x[:, g(o) K + j]`` with K = 1 or 2
input channels per group and O = C_out / groups outputs per group.

Every kernel sees a tensor as rows m = (n, h, w) and channels, addressed through its strides
(N, C, S = H*W), so channels_last and contiguous inputs run without a copy and outputs keep
the input's layout. Each program handles a tile of rows x channels and accumulates in
float32. The weight gradient is a reduction: each program sums a block of rows into one row
of a (blocks, C_out, K) float32 buffer, and torch sums the blocks (deterministic, no atomics).
Import only where triton is importable (:func:`mgspec.kernels._triton.runs_on`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mgspec.kernels._triton import layout

BLOCK_M = 64
BLOCK_C = 32
#: Rows one weight-gradient program reduces: few enough programs, few partial sums.
REDUCE_ROWS = 1024


@triton.jit
def _forward_kernel(x, w, y, M, S, C_OUT, sxn, sxc, sxs, syn, syc, sys, K: tl.constexpr, OG: tl.constexpr,
                    BM: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    m = tl.program_id(0) * BM + tl.arange(0, BM)
    o = tl.program_id(1) * BC + tl.arange(0, BC)
    mask_m, mask_o = m < M, o < C_OUT
    mask = mask_m[:, None] & mask_o[None, :]
    n, s = (m // S).to(tl.int64), (m % S).to(tl.int64)
    g = o // OG
    acc = tl.zeros((BM, BC), dtype=tl.float32)
    for j in tl.static_range(K):
        c = (g * K + j).to(tl.int64)
        xv = tl.load(x + n[:, None] * sxn + c[None, :] * sxc + s[:, None] * sxs, mask=mask, other=0.0)
        wv = tl.load(w + o * K + j, mask=mask_o, other=0.0)
        acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    out = y + n[:, None] * syn + o.to(tl.int64)[None, :] * syc + s[:, None] * sys
    tl.store(out, acc.to(y.dtype.element_ty), mask=mask)


@triton.jit
def _backward_input_kernel(gy, w, gx, M, S, C_IN, sgn, sgc, sgs, sxn, sxc, sxs, K: tl.constexpr, OG: tl.constexpr,
                           BM: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    m = tl.program_id(0) * BM + tl.arange(0, BM)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    mask_m, mask_c = m < M, c < C_IN
    mask = mask_m[:, None] & mask_c[None, :]
    n, s = (m // S).to(tl.int64), (m % S).to(tl.int64)
    g, j = c // K, c % K
    acc = tl.zeros((BM, BC), dtype=tl.float32)
    for i in tl.static_range(OG):
        o = g * OG + i
        gv = tl.load(gy + n[:, None] * sgn + o.to(tl.int64)[None, :] * sgc + s[:, None] * sgs, mask=mask, other=0.0)
        wv = tl.load(w + o * K + j, mask=mask_c, other=0.0)
        acc += gv.to(tl.float32) * wv.to(tl.float32)[None, :]
    out = gx + n[:, None] * sxn + c.to(tl.int64)[None, :] * sxc + s[:, None] * sxs
    tl.store(out, acc.to(gx.dtype.element_ty), mask=mask)


@triton.jit
def _backward_weight_kernel(x, gy, part, M, S, C_OUT, sxn, sxc, sxs, sgn, sgc, sgs, ROWS: tl.constexpr, K: tl.constexpr,
                            OG: tl.constexpr, BM: tl.constexpr, BC: tl.constexpr):  # fmt: skip
    block = tl.program_id(0)
    o = tl.program_id(1) * BC + tl.arange(0, BC)
    mask_o = o < C_OUT
    g = o // OG
    acc0 = tl.zeros((BC,), dtype=tl.float32)
    acc1 = tl.zeros((BC,), dtype=tl.float32)
    for start in range(0, ROWS, BM):
        m = block * ROWS + start + tl.arange(0, BM)
        mask = (m < M)[:, None] & mask_o[None, :]
        n, s = (m // S).to(tl.int64), (m % S).to(tl.int64)
        gv = tl.load(gy + n[:, None] * sgn + o.to(tl.int64)[None, :] * sgc + s[:, None] * sgs, mask=mask, other=0.0)
        gv = gv.to(tl.float32)
        c0 = (g * K).to(tl.int64)
        x0 = tl.load(x + n[:, None] * sxn + c0[None, :] * sxc + s[:, None] * sxs, mask=mask, other=0.0)
        acc0 += tl.sum(gv * x0.to(tl.float32), axis=0)
        if K == 2:
            x1 = tl.load(x + n[:, None] * sxn + (c0 + 1)[None, :] * sxc + s[:, None] * sxs, mask=mask, other=0.0)
            acc1 += tl.sum(gv * x1.to(tl.float32), axis=0)
    base = part + block * C_OUT * K + o * K
    tl.store(base, acc0, mask=mask_o)
    if K == 2:
        tl.store(base + 1, acc1, mask=mask_o)


def _grid(rows: int, channels: int) -> tuple[int, int]:
    return triton.cdiv(rows, BLOCK_M), triton.cdiv(channels, BLOCK_C)


def forward(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``F.conv2d(x, weight, groups=groups)`` for a (C_out, K, 1, 1) weight, K in (1, 2)."""
    x, fmt, (sxn, sxc, sxs) = layout(x)
    n, cin, h, w = x.shape
    cout, k = weight.shape[:2]
    y = torch.empty((n, cout, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
    _, _, (syn, syc, sys) = layout(y)
    m = n * h * w
    if m and cout:
        _forward_kernel[_grid(m, cout)](
            x, weight.contiguous(), y, m, h * w, cout, sxn, sxc, sxs, syn, syc, sys,
            K=k, OG=cout // groups, BM=BLOCK_M, BC=BLOCK_C,
        )  # fmt: skip
    return y


def backward_input(grad: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The input gradient: each input channel's weighted sum of its group's output gradients."""
    grad, fmt, (sgn, sgc, sgs) = layout(grad)
    n, cout, h, w = grad.shape
    k = weight.shape[1]
    cin = groups * k
    gx = torch.empty((n, cin, h, w), dtype=grad.dtype, device=grad.device, memory_format=fmt)
    _, _, (sxn, sxc, sxs) = layout(gx)
    m = n * h * w
    if m and cin:
        _backward_input_kernel[_grid(m, cin)](
            grad, weight.contiguous(), gx, m, h * w, cin, sgn, sgc, sgs, sxn, sxc, sxs,
            K=k, OG=cout // groups, BM=BLOCK_M, BC=BLOCK_C,
        )  # fmt: skip
    return gx


def backward_weight(x: torch.Tensor, grad: torch.Tensor, groups: int) -> torch.Tensor:
    """The weight gradient: per output channel and tap, the sum over rows of grad * input."""
    x, _, (sxn, sxc, sxs) = layout(x)
    grad, _, (sgn, sgc, sgs) = layout(grad)
    n, cin, h, w = x.shape
    cout = grad.shape[1]
    k = cin // groups
    m = n * h * w
    blocks = max(1, triton.cdiv(m, REDUCE_ROWS))
    part = torch.empty((blocks, cout, k), dtype=torch.float32, device=x.device)
    if cout:
        _backward_weight_kernel[(blocks, triton.cdiv(cout, BLOCK_C))](
            x, grad, part, m, h * w, cout, sxn, sxc, sxs, sgn, sgc, sgs, REDUCE_ROWS,
            K=k, OG=cout // groups, BM=BLOCK_M, BC=BLOCK_C,
        )  # fmt: skip
    return part.sum(0).reshape(cout, k, 1, 1).to(x.dtype)
