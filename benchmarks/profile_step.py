"""Where an MGiaD training step spends its time, with and without the grouped-convolution kernel.

    python benchmarks/profile_step.py [--overrides channel_grid.coarsest=16] [--batch 64] [--steps 3]

torch.profiler over a few SGD steps of the runtime model (channels_last, as ``mgspec train``);
every op's self CPU time goes to one category, so the shares add up to the step.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

import mgspec  # noqa: E402
from mgspec import kernels  # noqa: E402
from mgspec.train.memory import tune_malloc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = [
    ("grouped 3x3 conv (kernel)", ("mgspec",)),
    ("convolution (oneDNN)", ("conv", "mkldnn")),
    ("BatchNorm", ("batch_norm",)),
    ("element-wise (add, sub, ReLU and their gradients)", ("add", "sub", "relu", "threshold", "mul", "neg")),
    ("optimizer", ("sgd", "_foreach")),
    ("copies and allocation", ("copy", "empty", "zero", "fill", "clone", "contiguous", "to")),
]


def category(name: str) -> str:
    lowered = name.lower()
    for label, keys in CATEGORIES:
        if any(k in lowered for k in keys):
            return label
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--overrides", nargs="*", default=["channel_grid.coarsest=16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_malloc()
    print(f"Machine: {describe()}; MGiaD {' '.join(args.overrides)}, batch {args.batch}, channels_last")
    base = mgspec.create_model(ROOT / "specs/mgiad_cifar10.yaml", args.overrides).to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    for variant in ("oneDNN", "kernel"):
        model = copy.deepcopy(base).train()
        if variant == "kernel" and not kernels.use_kernel(model):
            print("kernel unavailable")
            break
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        totals: dict[str, float] = {}
        for event in prof.key_averages():
            totals[category(event.key)] = totals.get(category(event.key), 0.0) + event.self_cpu_time_total
        whole = sum(totals.values())
        print(f"\n{variant}: {whole / args.steps / 1e3:.0f} ms per step (profiled)")
        print("| category | ms / step | share |")
        print("|---|--:|--:|")
        for label, value in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"| {label} | {value / args.steps / 1e3:.0f} | {100 * value / whole:.0f}% |")


if __name__ == "__main__":
    main()
