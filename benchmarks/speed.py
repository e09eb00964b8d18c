"""Does MGiaD's lower MAC count become less time? Training and inference throughput vs MgNet_{A,B}.

    python benchmarks/speed.py [--rounds 3] [--threads 2] [--no-compile] [--out docs/performance-table.md]

Models (the generated-code backend, as `mgspec compile` writes it): MgNet_{A,B}, MGiaD cK=64/gs=4
and MGiaD cK=16/gs=4, CIFAR-size input. Variants, each applied alike to every model:

- ``eager NCHW``          the plain model
- ``eager channels_last`` weights and input in channels_last (what ``mgspec train`` does by default)
- ``compiled channels_last`` ``torch.compile`` of the model (``mgspec train --compile``); for
  inference with inductor's freezing, which folds BatchNorm into the convolutions

Training is one SGD step (forward, cross-entropy, backward, update); inference is a forward pass
in eval mode under ``torch.no_grad``. All configurations are timed in interleaved rounds in one
process, so machine load affects them alike; the table gives the median over rounds. GFLOP/s use
the analytic MAC count (2 FLOPs per MAC; training = 3x forward), not torch's flop counter, which
over-counts grouped weight-gradient FLOPs by the number of groups.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import describe  # benchmarks/machine.py, beside this script

import mgspec
from mgspec import codegen
from mgspec.train.memory import tune_malloc

ROOT = Path(__file__).resolve().parents[1]

MODELS = [
    ("MgNet_{A,B}", "specs/mgnet_cifar10.yaml", []),
    ("MGiaD cK=64, gs=4", "specs/mgiad_cifar10.yaml", []),
    ("MGiaD cK=16, gs=4", "specs/mgiad_cifar10.yaml", ["channel_grid.coarsest=16"]),
]
VARIANTS = ["eager NCHW", "eager channels_last", "compiled channels_last"]


def generated_module(spec: str, overrides: list[str], directory: Path) -> tuple[types.ModuleType, int, int]:
    """The spec compiled by the codegen backend and imported, with its MACs and weights."""
    graph = mgspec.compile_graph(ROOT / spec, overrides)
    counts = mgspec.count(graph)
    path = directory / f"m{abs(hash((spec, tuple(overrides))))}.py"
    path.write_text(codegen.render(graph))
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, counts.macs, counts.total


class Case:
    """One (model, variant, mode, batch) configuration, set up once and timed per round."""

    def __init__(self, model: torch.nn.Module, variant: str, mode: str, batch: int) -> None:
        self.mode, self.batch = mode, batch
        memory = torch.contiguous_format if variant == "eager NCHW" else torch.channels_last
        model = model.to(memory_format=memory)
        self.x = torch.randn(batch, 3, 32, 32).to(memory_format=memory)
        self.y = torch.randint(0, 10, (batch,))
        if mode == "train":
            model.train()
            self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
            self.model = torch.compile(model) if variant.startswith("compiled") else model
        else:
            model.eval()
            if variant.startswith("compiled"):
                import torch._inductor.config as inductor_config

                inductor_config.freezing = True  # constant-folds BN into the convs
                with torch.no_grad():
                    self.model = torch.compile(model)
                    self.model(self.x)
                inductor_config.freezing = False
            else:
                self.model = model
        self.step()  # warm-up (and compilation)
        self.step()

    def step(self) -> None:
        if self.mode == "train":
            self.optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(self.x), self.y).backward()
            self.optimizer.step()
        else:
            with torch.no_grad():
                self.model(self.x)

    def images_per_s(self, min_time: float) -> float:
        steps, start = 0, time.perf_counter()
        while True:
            self.step()
            steps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                return steps * self.batch / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=1.5, help="seconds per measurement")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant (saves minutes)")
    parser.add_argument("--no-tune-malloc", action="store_true", help="keep glibc's default mmap thresholds")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.no_tune_malloc:
        tune_malloc()  # what mgspec train does; applies to every model alike
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    variants = VARIANTS[:2] if args.no_compile else VARIANTS
    load_start = os.getloadavg()
    modes = [("train", 64), ("train", 128), ("infer", 128), ("infer", 1)]

    cases, info = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for title, spec, overrides in MODELS:
            module, macs, weights = generated_module(spec, overrides, Path(tmp))
            info[title] = (macs, weights)
            for variant in variants:
                for mode, batch in modes:
                    torch.manual_seed(0)
                    t = time.perf_counter()
                    cases[(title, variant, mode, batch)] = Case(module.create_model(), variant, mode, batch)
                    print(f"set up {title} / {variant} / {mode} {batch}: {time.perf_counter() - t:.0f} s", flush=True)
        results: dict[tuple, list[float]] = {key: [] for key in cases}
        for r in range(args.rounds):
            for key, case in cases.items():
                results[key].append(case.images_per_s(args.min_time))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    load_end = os.getloadavg()
    ips = {key: statistics.median(v) for key, v in results.items()}
    spread = {key: (max(v) - min(v)) / statistics.median(v) for key, v in results.items()}

    best_mgnet = {m: max(ips[("MgNet_{A,B}", v, *m)] for v in variants) for m in modes}
    lines = [
        f"`python benchmarks/speed.py {' '.join(argv if argv is not None else sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"Machine: {describe()}. Load average {load_start[0]:.2f} before, {load_end[0]:.2f} after; "
        f"median of {args.rounds} interleaved rounds of at least {args.min_time} s each; "
        f"glibc malloc thresholds {'default' if args.no_tune_malloc else 'raised (as in mgspec train)'}.",
        "",
        "| model | variant | MACs | weights | train b64 img/s | train b128 img/s | GFLOP/s (train b128) "
        "| infer b128 img/s | infer b1 img/s | train b64 / b128 vs best MgNet | infer b128 vs best MgNet |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for title, _, _ in MODELS:
        macs, weights = info[title]
        for variant in variants:
            k = lambda mode, batch, title=title, variant=variant: (title, variant, mode, batch)
            gflops = 6 * macs * ips[k("train", 128)] / 1e9
            ratio_train = " / ".join(f"{ips[k('train', b)] / best_mgnet[('train', b)]:.2f}x" for b in (64, 128))
            lines.append(
                f"| {title} | {variant} | {macs / 1e6:.1f}M | {weights:,} | {ips[k('train', 64)]:.1f} "
                f"| {ips[k('train', 128)]:.1f} | {gflops:.0f} | {ips[k('infer', 128)]:.0f} | {ips[k('infer', 1)]:.0f} "
                f"| {ratio_train} | {ips[k('infer', 128)] / best_mgnet[('infer', 128)]:.2f}x |"
            )
    worst = max(spread.values())
    lines += ["", f"Largest spread between rounds of one configuration: {100 * worst:.0f}%.", ""]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
