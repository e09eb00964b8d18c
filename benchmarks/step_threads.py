"""What bounds ``study run --jobs 2`` on 2 cores: a training step's thread scaling, and two steps at once.

One MGiaD-small training step (batch 128, 32x32, SGD, channels-last, as ``mgspec train`` runs
it on CPU) is timed in a child process:

- alone with 2 torch threads (what each trial of ``--jobs 1`` gets),
- alone with 1 thread,
- twice at once, two children with 1 thread each (what ``--jobs 2`` does).

Rounds interleave the three (their order rotates); each child reports the median of its steps
after warm-up, and the load average before each round is recorded. With ``t2``, ``t1`` and
``t1x2`` the step times, two 1-thread trainings at once take ``t1x2 / (2 t2)`` of the time of two
2-thread trainings in turn: the floor of the ``--jobs 2`` / ``--jobs 1`` ratio, counting steps
only. ``s = t1 / t2`` is the second thread's speedup, ``c = t1x2 / t1`` what sharing the
machine costs a step.

    python benchmarks/step_threads.py --rounds 3        # the measurement (nothing else running)
    python benchmarks/step_threads.py --dry             # a quick check of the script
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(threads: int, steps: int, spec: str, batch: int) -> None:
    """Time ``steps`` training steps after 3 of warm-up; print the median in ms as JSON."""
    import torch

    sys.path.insert(0, str(ROOT))
    import mgspec
    from mgspec.train.batches import random_crop_flip

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = mgspec.create_model(spec).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch,))
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        x = random_crop_flip(images, 4, generator).float().div_(255).sub_(0.5).div_(0.25)
        loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = []
    for i in range(steps + 3):
        start = time.perf_counter()
        step()
        if i >= 3:
            times.append(time.perf_counter() - start)
    print(json.dumps({"threads": threads, "step_ms": 1000 * statistics.median(times)}))


def _start(threads: int, args) -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", str(threads), "--steps", str(args.steps)]
    command += ["--spec", args.spec, "--batch", str(args.batch)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _step_ms(processes: list[subprocess.Popen]) -> list[float]:
    out = []
    for process in processes:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            sys.exit(f"a child failed:\n{stderr}")
        out.append(json.loads(stdout.strip().splitlines()[-1])["step_ms"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--spec", default=str(ROOT / "specs" / "mgiad_small_cifar10.yaml"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dry", action="store_true", help="a few small steps, to check the script")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.steps, args.spec, args.batch)
    if args.dry:
        args.rounds, args.steps, args.batch = 1, 2, 8
    kinds = {
        "2 threads alone": lambda: _step_ms([_start(2, args)])[0],
        "1 thread alone": lambda: _step_ms([_start(1, args)])[0],
        "1 thread, two at once": lambda: statistics.fmean(_step_ms([_start(1, args), _start(1, args)])),
    }
    names = list(kinds)
    rounds = []
    for r in range(args.rounds):
        order = names[r % 3 :] + names[: r % 3]  # rotate, so no kind always runs first
        rounds.append({"load_before": os.getloadavg()[0], **{name: kinds[name]() for name in order}})
    t2, t1, both = (statistics.median(r[name] for r in rounds) for name in names)
    result = {
        "rounds": rounds,
        "median_step_ms": dict(zip(names, (t2, t1, both), strict=True)),
        "speedup_s": t1 / t2,
        "sharing_cost_c": both / t1,
        "jobs_ratio_floor": both / (2 * t2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
