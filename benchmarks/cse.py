"""What the optimisation passes buy: a training step of the literal and the optimised graph.

    python benchmarks/cse.py [--rounds 7] [--batch 64] [--threads 2]

For MgNet_{A,B}, MGiaD cK=64/gs=4 and MGiaD cK=16/gs=4 (CIFAR-size input), the generated-code
backend of the literal graph (``--no-optimize``) and of the optimised one (zero folding + CSE),
eager, channels_last (what ``mgspec train`` runs), the same weights. One training step is
forward, cross-entropy, backward and an SGD update. All six models are timed in interleaved
rounds in one process, so load affects them alike; the table gives medians and the ratio
literal / optimised per model, with the MACs each pass left. Run it on a quiet machine: the load
average is recorded.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import describe

import mgspec
from mgspec import codegen

ROOT = Path(__file__).resolve().parents[1]
MODELS = [
    ("MgNet_{A,B}", "specs/mgnet_cifar10.yaml", []),
    ("MGiaD cK=64, gs=4", "specs/mgiad_cifar10.yaml", []),
    ("MGiaD cK=16, gs=4", "specs/mgiad_cifar10.yaml", ["channel_grid.coarsest=16"]),
]


def build(spec: str, overrides: list[str], optimized: bool, directory: Path) -> tuple[torch.nn.Module, int]:
    graph = mgspec.compile_graph(ROOT / spec, overrides, optimized)
    path = directory / f"m{len(list(directory.iterdir()))}.py"
    path.write_text(codegen.render(graph))
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.create_model(), mgspec.count(graph).macs


def step_time(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        for name, spec, overrides in MODELS:
            literal, literal_macs = build(spec, overrides, False, Path(tmp))
            optimized, macs = build(spec, overrides, True, Path(tmp))
            optimized.load_state_dict(literal.state_dict())
            for label, model, m in (("literal", literal, literal_macs), ("optimised", optimized, macs)):
                model.to(memory_format=torch.channels_last).train()
                opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
                for _ in range(2):  # warm up the allocator and oneDNN's kernels
                    step_time(model, opt, x, y)
                cases.append((name, label, model, opt, m, []))
        for _ in range(args.rounds):
            for _, _, model, opt, _, times in cases:
                times.append(step_time(model, opt, x, y))
    print(f"{describe()}, batch {args.batch}, load average {os.getloadavg()[0]:.2f} after the run\n")
    print("| model | graph | MACs / image | training step (median) | literal / optimised |")
    print("|---|---|---|---|---|")
    medians = {(n, label): statistics.median(t) for n, label, _, _, _, t in cases}
    for name, label, _, _, m, _ in cases:
        ratio = medians[(name, "literal")] / medians[(name, label)] if label == "optimised" else 1.0
        print(f"| {name} | {label} | {m / 1e6:,.1f}M | {1000 * medians[(name, label)]:.0f} ms | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
