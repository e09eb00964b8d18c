"""Spec commands at the documented limits (docs/spec-language.md, "Limits"), timed.

    python benchmarks/limits.py [--rounds 3] [--commands validate count compile]

Writes specs that sit at the limits -- the most smoothing steps (2,040 in ResNet blocks with a
channel grid, in MGiaD cycles and in MgNet steps), the widest level (16,384 channels with 128
channel cycles), the most levels and the largest input -- into a temporary folder and runs
``mgspec validate``, ``mgspec count`` (and ``--no-optimize``) and ``mgspec compile`` on each as
fresh processes. Prints a markdown table of the median wall time per spec and command. The
passes are linear in the graph's size (tests/test_pass_cost.py), so these times grow with the
limits, not with their square. Run it on a quiet machine: the load average is recorded.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

#: ``python -m mgspec``: the mgspec this interpreter imports (a checkout on PYTHONPATH too).
MGSPEC = [sys.executable, "-m", "mgspec"]

#: name -> spec text, each at (or just under) a documented limit.
SPECS = {
    # 156 MGIC blocks of 13 smoothing steps (channel levels 16, 8; 3 pre, 3 post): 2,028 steps.
    "mgic_2028_steps": "resolution_grid:\n  block: resnet_basic\n  levels: [{channels: 16, steps: 156}]\n"
    "channel_grid: {group_size: 4, coarsest: 8, pre_smoothing: 3, post_smoothing: 3}\n",
    # 8 levels of 255 MgNet steps: 2,040 steps.
    "mgnet_2040_steps": "resolution_grid:\n  block: mgnet\n  share: []\n  levels:\n"
    + "".join("    - {channels: 8, steps: 255}\n" for _ in range(8)),
    # 16,384 channels, 128 channel cycles of 15 steps (channel levels 16,384 down to 256): 1,920 steps.
    "mgiad_16384_channels": "resolution_grid:\n  block: mgnet\n  levels: [{channels: 16384, steps: 128}]\n"
    "channel_grid: {group_size: 4, coarsest: 256}\n",
    # 12 levels on a 4096x4096 input.
    "mgnet_12_levels_4096": "input: {size: 4096}\nresolution_grid:\n  block: mgnet\n  levels:\n"
    + "".join("    - {channels: 16, steps: 4}\n" for _ in range(12)),
}

COMMANDS = {
    "validate": ["validate"],
    "count": ["count"],
    "count --no-optimize": ["count", "--no-optimize"],
    "compile": ["compile", "-o", "OUT"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--specs", nargs="+", choices=list(SPECS), default=list(SPECS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.specs:
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(f"name: {name}\nclasses: 10\n{SPECS[name]}")
            row = [name]
            for command in args.commands:
                argv = [a.replace("OUT", str(Path(tmp) / "out")) for a in COMMANDS[command]]
                times = []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    subprocess.run([*MGSPEC, argv[0], str(path), *argv[1:]], check=True, capture_output=True)
                    times.append(time.perf_counter() - start)
                row.append(f"{statistics.median(times):.2f} s")
            rows.append(row)
    print(describe())
    print()
    print("| spec | " + " | ".join(args.commands) + " |")
    print("|---" * (len(args.commands) + 1) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
