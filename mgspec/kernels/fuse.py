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

from torch import nn

from mgspec.kernels.fused_bn import batch_norm_act

__all__ = ["fuse_batchnorm"]


def _bn_act(m, c, x):
    bn, act = m
    return batch_norm_act(bn, x, act)


def _bn_act_add(m, c, x, residual):
    bn, act, residual_first = m
    return batch_norm_act(bn, x, act, residual, residual_first)


def fuse_batchnorm(model: nn.Module) -> int:
    """Fuse the BatchNorm -> activation (-> add) chains of a runtime model; how many were fused."""
    from mgspec import build

    acts = {build._relu: "relu", build._gelu: "gelu", build._silu: "silu"}
    program = list(model._program)
    uses: dict[int, list[int]] = {}
    for pos, (_, _, _, _, args, _) in enumerate(program):
        for a in args:
            uses.setdefault(a, []).append(pos)
    producer = {step[0]: pos for pos, step in enumerate(program)}
    drop: set[int] = set()
    fused = 0
    for pos, (i, kernel, module, _cout, args, _frees) in enumerate(program):
        if kernel is not build._module or type(module) is not nn.BatchNorm2d or uses.get(i, []) == []:
            continue
        if len(uses[i]) != 1 or program[uses[i][0]][1] not in acts:
            continue
        act_pos = uses[i][0]
        act_step = program[act_pos]
        last, step_args, entry = act_pos, (args[0],), (module, acts[act_step[1]])
        kernel_fn = _bn_act
        j = act_step[0]
        if len(uses.get(j, [])) == 1 and program[uses[j][0]][1] is build._add:
            add_pos = uses[j][0]
            a, b = program[add_pos][4]
            if a != b and producer.get(a if b == j else b, -1) < add_pos:
                other = a if b == j else b
                last, step_args = add_pos, (args[0], other)
                entry, kernel_fn = (module, acts[act_step[1]], b == j), _bn_act_add
        if any(program[p][2] is module for p in range(pos + 1, last)):
            continue
        chain = [pos, act_pos] + ([last] if last != act_pos else [])
        merged = tuple(f for p in chain for f in program[p][5])
        program[last] = (program[last][0], kernel_fn, entry, program[last][3], step_args, merged)
        drop.update(chain[:-1])
        fused += 1
    model._program = [step for pos, step in enumerate(program) if pos not in drop]
    return fused
