"""Train ResNet20, MgNet (ResNet20 size) and MGiaD (cK=16, gs=4) alike on real CIFAR-10.

    python benchmarks/train_cifar.py [--data-dir ../shared/data] [--epochs 15] [--out docs/results.md]

Every model gets the same recipe (the paper's, shortened: SGD 0.9, weight decay 1e-4,
lr 0.05 with cosine annealing over --epochs, batch 128, crop + flip) through ``mgspec train``
itself, and docs/results.md records weights, MACs, accuracies and training throughput with
the command and machine. The shipped data is a CIFAR-10 subset (4,660 training and 846 test
images), so the accuracies are far below the paper's 50,000-image numbers; what carries over
is the comparison at equal training.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py, beside this script

from mgspec.train import load, prepare, recipe, train

ROOT = Path(__file__).resolve().parents[1]

MODELS = [
    ("ResNet20", "specs/resnet20_cifar10.yaml", []),
    ("MgNet_{A,B}, ResNet20 size", "specs/mgnet_small_cifar10.yaml", []),
    ("MGiaD cK=16, gs=4", "specs/mgiad_cifar10.yaml", ["channel_grid.coarsest=16", "channel_grid.group_size=4"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args(argv)

    rows, how = [], ""
    started = time.strftime("%Y-%m-%d")
    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as runs:
        for title, spec, overrides in MODELS:
            config = recipe("cifar10", args.data_dir, epochs=args.epochs, seed=args.seed)
            run = prepare(ROOT / spec, overrides, config, Path(runs) / Path(spec).stem)
            print(f"== {title}", flush=True)
            steps = args.epochs * math.ceil(len(load("cifar10", args.data_dir, "train")) / config.batch_size)
            how = ("compiled" if config.compile_enabled(steps) else "eager") + (
                ", channels_last" if config.channels_last else ", NCHW"
            )
            summary = train(run, progress=sys.stdout.isatty())
            rows.append((title, spec, overrides, summary))

    command = "python benchmarks/train_cifar.py " + shlex.join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    lines = [
        "<!-- written by benchmarks/train_cifar.py -->",
        "# Results: equal training on the real CIFAR-10 subset",
        "",
        f"`{command.strip()}` on {started} (commit {commit.strip() or 'unknown'}), {describe()}, "
        f"load average {load_average:.1f} at the start.",
        "",
        f"Data: the CIFAR-10 subset in the official python layout (4,660 training, 846 test images). "
        f"Recipe: the paper's, over {args.epochs} epoch{'s' if args.epochs != 1 else ''} "
        "(SGD momentum 0.9, weight decay 1e-4, lr 0.05 with cosine annealing, batch 128, random crop 4 + flip), seed "
        f"{args.seed}, trained with `mgspec train` defaults ({how}).",
        "",
        "| model | spec | weights | MACs / image | best test acc | final test acc | final train acc "
        "| train images/s | wall time |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for title, spec, overrides, s in rows:
        shown = f"`{spec}`" + "".join(f" `--set {o}`" for o in overrides)
        lines.append(
            f"| {title} | {shown} | {s['weights']:,} | {s['macs']:,} | {100 * s['best_test_acc']:.1f}% "
            f"| {100 * s['final_test_acc']:.1f}% | {100 * s['final_train_acc']:.1f}% | {s['images_per_s']:.0f} "
            f"| {s['wall_time_s'] / 60:.1f} min |"
        )
    lines += [
        "",
        "With 846 test images one image is 0.12 percentage points; single-seed runs of this length differ",
        "by a few points from seed to seed (use `mgspec train --seeds N` for mean and standard deviation).",
        f"MGiaD has {rows[2][3]['weights'] / rows[0][3]['weights']:.2f}x the weights of ResNet20 and "
        f"{rows[2][3]['weights'] / rows[1][3]['weights']:.2f}x those of the shared-weight MgNet.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
