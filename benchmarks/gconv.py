"""Grouped 3x3 convolution, per pass: mgspec's kernel against oneDNN (F.conv2d) and a dense conv.

For each shape (channels C, group size gs, H = W) at batch 64, channels_last, float32, the three
passes (forward, input gradient, weight gradient) of

- ``oneDNN``: ``F.conv2d(groups=C/gs)`` and its autograd kernels (``torch.nn.grad``),
- ``kernel``: ``mgspec.kernels`` (the widest instruction set here; ``--isa avx2`` adds an AVX2 column),
- ``dense``: a dense 3x3 conv of about the same MACs (sqrt(C*gs) channels, same H and W).

GFLOP/s count 2 FLOPs per multiply-add. Rounds are interleaved (every configuration once per
round) and the median is reported; with one thread the timer is the process CPU time, which a
loaded machine disturbs least, otherwise wall time. The load average is printed before and after.

    python benchmarks/gconv.py --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from mgspec import kernels  # noqa: E402
from mgspec.train.memory import tune_malloc  # noqa: E402

SHAPES = [(64, 32, 4), (128, 16, 4), (256, 8, 4), (128, 8, 4), (64, 32, 8), (128, 16, 8), (256, 8, 8), (128, 8, 8)]
EXTRA = [(64, 32, 2), (64, 32, 16)]
CL = torch.channels_last
PASSES = ("forward", "input grad", "weight grad")


def passes(x, w, groups, dy, impl):
    if impl == "onednn":
        return (
            lambda: F.conv2d(x, w, padding=1, groups=groups),
            lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, padding=1, groups=groups),
            lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, padding=1, groups=groups),
        )
    ops = torch.ops.mgspec_gconv
    return (
        lambda: ops.forward(x, w, groups),
        lambda: ops.backward_input(dy, w, groups),
        lambda: ops.backward_weight(x, dy, groups),
    )


def timed(fn, reps: int, cpu: bool) -> float:
    clock = time.process_time if cpu else time.perf_counter
    start = clock()
    for _ in range(reps):
        fn()
    return (clock() - start) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--min-time", type=float, default=0.15, help="seconds per measurement (at least one call)")
    parser.add_argument("--isa", default="", help="also time the kernel restricted to this instruction set (avx2)")
    parser.add_argument("--all", action="store_true", help="also group sizes 2 and 16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()  # as mgspec train: outputs are reused heap blocks, not fresh page-faulted mappings
    if not kernels.available():
        sys.exit("the kernel is not available here: " + str(kernels._build.error()))
    cpu_clock = args.threads == 1
    print(f"Machine: {describe()}; kernel ISA {kernels.isa()}; batch {args.batch}, channels_last, float32")
    print(f"Load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    shapes = SHAPES + (EXTRA if args.all else [])
    impls = ["onednn", "kernel"] + (["kernel-" + args.isa] if args.isa else []) + ["dense"]
    cases = {}
    for c, size, gs in shapes:
        dense_c = round(math.sqrt(c * gs))
        for impl in impls:
            cc, g = (dense_c, 1) if impl == "dense" else (c, c // gs)
            x = torch.randn(args.batch, cc, size, size).to(memory_format=CL)
            w = torch.randn(cc, cc // g, 3, 3)
            dy = torch.randn(args.batch, cc, size, size).to(memory_format=CL)
            fns = passes(x, w, g, dy, "onednn" if impl == "dense" else impl)
            macs = args.batch * cc * (cc // g) * 9 * size * size
            cases[(c, size, gs, impl)] = (fns, macs)
    times: dict = {key: [[] for _ in PASSES] for key in cases}
    reps: dict = {}
    for r in range(args.rounds + 1):  # round 0 warms up and sizes the repetitions
        for key, (fns, _) in cases.items():
            isa = key[3].split("-", 1)[1] if key[3].startswith("kernel-") else ""
            os.environ["MGSPEC_GCONV_ISA"] = isa
            for p, fn in enumerate(fns):
                if r == 0:
                    fn()
                    t = timed(fn, 1, cpu_clock)
                    reps[(key, p)] = max(1, math.ceil(args.min_time / max(t, 1e-6)))
                else:
                    times[key][p].append(timed(fn, reps[(key, p)], cpu_clock))
    os.environ.pop("MGSPEC_GCONV_ISA", None)
    print(f"Load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    clock = "CPU" if cpu_clock else "wall"
    print(f"Median of {args.rounds} interleaved rounds, {clock} time, {args.threads} thread(s).")
    print()
    extra = f" kernel {args.isa} GFLOP/s | {args.isa} vs oneDNN |" if args.isa else ""
    head = "| C | HxW | gs | pass | oneDNN GFLOP/s | kernel GFLOP/s | kernel vs oneDNN |"
    print(f"{head}{extra} dense conv (C) GFLOP/s |")
    print("|--:|--:|--:|---|--:|--:|--:|" + ("--:|--:|" if args.isa else "") + "--:|")
    for c, size, gs in shapes:
        for p, name in enumerate(PASSES):

            def gflops(impl, c=c, size=size, gs=gs, p=p):
                _, macs = cases[(c, size, gs, impl)]
                return 2 * macs / statistics.median(times[(c, size, gs, impl)][p]) / 1e9

            one, ker, den = gflops("onednn"), gflops("kernel"), gflops("dense")
            alt = gflops("kernel-" + args.isa) if args.isa else 0.0
            cols = f" {alt:.0f} | {alt / one:.2f}x |" if args.isa else ""
            row = f"| {c} | {size}x{size} | {gs} | {name} | {one:.0f} | {ker:.0f} | {ker / one:.2f}x |"
            print(f"{row}{cols} {den:.0f} ({round(math.sqrt(c * gs))}) |")


if __name__ == "__main__":
    main()
