"""glibc's default malloc against the tuned thresholds of ``mgspec train``, training-step throughput.

    python benchmarks/allocator.py [--rounds 3] [--threads 2]

Allocator settings are per process and cannot be undone, so each measurement runs in a fresh
child process; default and tuned children alternate round by round so that load affects both
alike. Reports median images/s, minor page faults per step and system time per step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, torch
import torch.nn.functional as F
import mgspec
from mgspec.train.memory import tune_malloc
spec, overrides, batch = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tuned, threads = sys.argv[4] == "1", int(sys.argv[5])
if tuned:
    assert tune_malloc()
torch.set_num_threads(threads)
torch.manual_seed(0)
model = mgspec.create_model(spec, overrides).to(memory_format=torch.channels_last)
x = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)
y = torch.randint(0, 10, (batch,))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
step(); step()
r0, t0, steps = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
while time.perf_counter() - t0 < 4 or steps < 3:
    step(); steps += 1
elapsed, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"ips": steps * batch / elapsed, "faults": (r1.ru_minflt - r0.ru_minflt) / steps,
                  "sys": (r1.ru_stime - r0.ru_stime) / steps, "step": elapsed / steps}))
"""

MODELS = [
    ("MgNet_{A,B}", "specs/mgnet_cifar10.yaml", []),
    ("MGiaD cK=64, gs=4", "specs/mgiad_cifar10.yaml", []),
    ("MGiaD cK=16, gs=4", "specs/mgiad_cifar10.yaml", ["channel_grid.coarsest=16"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args(argv)
    results: dict[tuple, list[dict]] = {}
    for r in range(args.rounds):
        for title, spec, overrides in MODELS:
            for batch in args.batches:
                for tuned in (False, True):
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, str(ROOT / spec), json.dumps(overrides), str(batch),
                         "1" if tuned else "0", str(args.threads)],
                        capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    results.setdefault((title, batch, tuned), []).append(json.loads(out.stdout.splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print("| model | batch | malloc | train img/s | minor faults / step | system time / step | speed-up |")
    print("|---|--:|---|--:|--:|--:|--:|")
    for title, _, _ in MODELS:
        for batch in args.batches:
            base = statistics.median(m["ips"] for m in results[(title, batch, False)])
            for tuned in (False, True):
                ms = results[(title, batch, tuned)]
                ips = statistics.median(m["ips"] for m in ms)
                faults = statistics.median(m["faults"] for m in ms)
                system = statistics.median(m["sys"] for m in ms)
                print(
                    f"| {title} | {batch} | {'tuned' if tuned else 'default'} | {ips:.1f} | {faults:,.0f} "
                    f"| {1000 * system:.0f} ms | {ips / base:.2f}x |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
