"""Fuse BatchNorm -> activation (-> residual add) in a runtime model's op program.

The runtime backend (:class:`mgspec.build.GraphModel`) runs a program of steps, one per graph
node. :func:`fuse_batchnorm` rewrites it in place so that each chain

    t1 = bn(x);  t2 = act(t1);  [t3 = a + t2  or  t3 = t2 + a]

whose intermediates have no other use becomes one step, :func:`mgspec.kernels.fused_bn.
batch_norm_act`, at the position of the chain's last node. The step dispatches per call: in
training mode on CUDA with triton importable it runs the fused Triton kernels; anywhere else
it runs the same PyTorch ops as before, in the same order, so CPU results are unchanged
bit for bit. Parameters, buffers, state_dict and the graph are untouched.

A chain is left alone when its BatchNorm module also runs somewhere between the chain's first
and last node (the order of running-statistics updates would change).
"""

from __future__ import annotations

import functools
import operator

import torch.nn.functional as F
from torch import nn

from mgspec.kernels.fused_bn import batch_norm_act

__all__ = ["fuse_batchnorm"]


def _bn_act(bn, act, x):
    return batch_norm_act(bn, x, act)


def _bn_act_add(bn, act, residual_first, x, residual):
    return batch_norm_act(bn, x, act, residual, residual_first)


def fuse_batchnorm(model: nn.Module) -> int:
    """Fuse the BatchNorm -> activation (-> add) chains of a runtime model; how many were fused.

    A program step is ``(node index, function, extra arguments, operand indices, values freed)``;
    a slot's step calls its module, an activation's ``torch.nn.functional.<name>``.
    """
    acts = {F.relu: "relu", F.gelu: "gelu", F.silu: "silu"}
    program = list(model._program)
    uses: dict[int, list[int]] = {}
    for pos, (_, _, _, args, _) in enumerate(program):
        for a in args:
            uses.setdefault(a, []).append(pos)
    producer = {step[0]: pos for pos, step in enumerate(program)}
    drop: set[int] = set()
    fused = 0
    for pos, (i, module, _extra, args, _frees) in enumerate(program):
        if type(module) is not nn.BatchNorm2d or len(uses.get(i, [])) != 1 or program[uses[i][0]][1] not in acts:
            continue
        act_pos = uses[i][0]
        act_step = program[act_pos]
        last, step_args = act_pos, (args[0],)
        function = functools.partial(_bn_act, module, acts[act_step[1]])
        j = act_step[0]
        if len(uses.get(j, [])) == 1 and program[uses[j][0]][1] is operator.add:
            add_pos = uses[j][0]
            a, b = program[add_pos][3]
            if a != b and producer.get(a if b == j else b, -1) < add_pos:
                other = a if b == j else b
                last, step_args = add_pos, (args[0], other)
                function = functools.partial(_bn_act_add, module, acts[act_step[1]], b == j)
        if any(program[p][1] is module for p in range(pos + 1, last)):
            continue
        chain = [pos, act_pos] + ([last] if last != act_pos else [])
        merged = tuple(f for p in chain for f in program[p][4])
        program[last] = (program[last][0], function, (), step_args, merged)
        drop.update(chain[:-1])
        fused += 1
    model._program = [step for pos, step in enumerate(program) if pos not in drop]
    return fused
