"""Start-up time of spec-only commands, against a bare interpreter, measured side by side.

    python benchmarks/startup.py [--rounds 15]

Each round runs ``python -c pass``, ``mgspec count specs/mgiad_cifar10.yaml`` and the other
spec-only commands once each, in a shuffled order, as fresh processes; the table gives the
median wall time of each and its excess over the bare interpreter. Target: ``count`` under
0.4 s on the reference machine (2 cores). Run it on a quiet machine: the load average is
recorded.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
MGSPEC = shutil.which("mgspec") or str(Path(sys.executable).with_name("mgspec"))
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "mgspec --help": [MGSPEC, "--help"],
    "mgspec validate": [MGSPEC, "validate", "specs/mgiad_cifar10.yaml"],
    "mgspec count": [MGSPEC, "count", "specs/mgiad_cifar10.yaml"],
    "mgspec compile --check": [MGSPEC, "compile", "specs/mgiad_cifar10.yaml", "-o", "generated", "--check"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(COMMANDS)
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            subprocess.run(COMMANDS[name], cwd=ROOT, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    print(describe())
    print("\n| command | median wall time | over `python -c pass` |\n|---|---|---|")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"| `{name}` | {median:.3f} s | {median - base:+.3f} s |")


if __name__ == "__main__":
    main()
