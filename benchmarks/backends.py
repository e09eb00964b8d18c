"""Training-step throughput: runtime vs generated vs hand-written MGiaD, side by side.

    python benchmarks/backends.py [--batch 64] [--rounds 5] [--steps 3] [--threads 2]

The hand-written model below is written for this benchmark from the algorithm in
docs/architectures.md, without mgspec. All three models are built for the same spec
(MGiaD, cK = 64, gs = 4, 32x32), checked to have the same number of weights, and timed in
interleaved rounds in one process so that machine load affects them alike. Prints a markdown
table of images/s and ratios to the hand-written model (median over rounds).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mgspec
from mgspec import codegen

ROOT = Path(__file__).resolve().parents[1]


# -- hand-written MGiaD ---------------------------------------------------------------------
def c3(cin, cout, groups=1, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)


class Smooth(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c), nn.BatchNorm2d(c)

    def forward(self, f, u, A, B):
        r = f if u is None else f - A(u)
        d = F.relu(self.bn2(B(F.relu(self.bn1(r)))))
        return d if u is None else u + d


class SiC(nn.Module):
    def __init__(self, c, ck, gs):
        super().__init__()
        coarsest = c // 2 < ck
        g = 1 if coarsest else c // gs
        self.A, self.B = c3(c, c, g), c3(c, c, g)
        self.pre, self.post = Smooth(c), Smooth(c)
        if coarsest:
            self.solve, self.coarse = Smooth(c), None
        else:
            h = c // 2
            self.R, self.Pi, self.P = (
                nn.Conv2d(c, h, 1, groups=h, bias=False),
                nn.Conv2d(c, h, 1, groups=h, bias=False),
                nn.Conv2d(h, c, 1, groups=h, bias=False),
            )
            self.bR, self.bPi, self.bP = nn.BatchNorm2d(h), nn.BatchNorm2d(h), nn.BatchNorm2d(c)
            self.coarse = SiC(h, ck, gs)

    def forward(self, f, u):
        u = self.pre(f, u, self.A, self.B)
        if self.coarse is None:
            u = self.solve(f, u, self.A, self.B)
        else:
            uc = self.bPi(self.Pi(u))
            fc = self.bR(self.R(f - self.A(u))) + self.coarse.A(uc)
            u = u + self.bP(self.P(self.coarse(fc, uc)))
        return self.post(f, u, self.A, self.B)


class HandMGiaD(nn.Module):
    def __init__(self, widths=(64, 128, 256, 256), ck=64, gs=4, classes=10):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0])
        cins = (widths[0],) + widths[:-1]
        self.R = nn.ModuleList(c3(a, b, a, 2) for a, b in zip(cins, widths, strict=True))
        self.Pi = nn.ModuleList(c3(a, b, a, 2) for a, b in zip(cins, widths, strict=True))
        self.cycles = nn.ModuleList(SiC(c, ck, gs) for c in widths)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        f = F.relu(self.bn(self.stem(x)))
        u = self.cycles[0](f, None)
        for i in range(1, len(self.cycles)):
            u_next = self.Pi[i](u)
            f = self.R[i](F.relu(f - self.cycles[i - 1].A(u))) + self.cycles[i].A(u_next)
            u = self.cycles[i](f, u_next)
        return self.fc(u.mean((2, 3)))


# -- timing ---------------------------------------------------------------------------------
def train_rate(model, x, y, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return steps * x.shape[0] / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    graph = mgspec.compile_graph(ROOT / "specs" / "mgiad_cifar10.yaml")
    path = Path("/tmp") / "mgspec_bench_mgiad.py"
    path.write_text(codegen.render(graph))
    spec = importlib.util.spec_from_file_location("mgspec_bench_mgiad", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    models = {
        "hand-written": HandMGiaD(),
        "runtime (mgspec.create_model)": mgspec.build_model(graph),
        "generated (mgspec compile)": module.create_model(),
    }
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    assert len(set(counts.values())) == 1, counts

    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    for m in models.values():
        train_rate(m, x, y, 1)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, m in models.items():
            rates[name].append(train_rate(m, x, y, args.steps))
    base = statistics.median(rates["hand-written"])
    print(
        f"MGiaD cK=64 gs=4, {counts['hand-written']:,} weights, batch {args.batch}, {args.threads} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print("| model | train img/s (median) | min | max | ratio to hand-written |")
    print("|---|---|---|---|---|")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {min(values):.1f} | {max(values):.1f} | {med / base:.3f} |")


if __name__ == "__main__":
    main()
