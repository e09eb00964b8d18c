"""Wall time of a 4-trial, one-epoch study with ``--jobs 2`` against ``--jobs 1``, side by side.

Each study runs in a fresh output folder with the same study file, in rounds of one `--jobs 1` and
one `--jobs 2` run whose order alternates (the ratio is the median over rounds); the load average is
recorded before each run (a busy machine makes the ratio meaningless). ``--dry`` runs a tiny
version (synthetic data, the tiny test spec) to check that the script works.

``--scaling`` also times one such trial alone (``mgspec train``, one epoch) with 1 and with 2
torch threads, interleaved: with a speedup ``s`` from the second thread, two 1-thread trainings
at once can at best take ``s / 2`` of the time of one 2-thread training after the other, the
floor of the ratio above on 2 cores.

    python benchmarks/study_jobs.py --data-dir ../shared/data            # the real measurement
    python benchmarks/study_jobs.py --dry                                 # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = """\
name: jobs-benchmark
spec: {spec}
dataset: cifar10
train: {{epochs: 1{extra}}}
seeds: 2
grid:
  channel_grid.coarsest: [8, 16]
"""


def run(folder: Path, data_dir: Path, jobs: int, out: str) -> dict:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    command = [sys.executable, "-m", "mgspec", "study", "run", "study.yaml", "--data-dir", str(data_dir)]
    command += ["--out", out, "--jobs", str(jobs)]
    done = subprocess.run(
        command, cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"study run --jobs {jobs} failed:\n{done.stdout}\n{done.stderr}")
    return {"jobs": jobs, "wall_s": time.perf_counter() - start, "load_before": load}


def train_once(folder: Path, spec: Path, data_dir: Path, threads: int, out: str, extra: list[str]) -> dict:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    command = [sys.executable, "-m", "mgspec", "train", str(spec), "-d", "cifar10", "--data-dir", str(data_dir)]
    command += ["--epochs", "1", "--set", "channel_grid.coarsest=8", "--threads", str(threads), "-o", out, "-q", *extra]
    done = subprocess.run(
        command, cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"train --threads {threads} failed:\n{done.stdout}\n{done.stderr}")
    return {"threads": threads, "wall_s": time.perf_counter() - start, "load_before": load}


def scaling(folder: Path, spec: Path, data_dir: Path, rounds: int, extra: list[str]) -> dict:
    """One trial alone with 1 and 2 threads, interleaved; the speedup and the floor s / 2 of the jobs ratio."""
    rows, speedups = [], []
    for r in range(rounds):
        order = (1, 2) if r % 2 == 0 else (2, 1)
        pair = {t: train_once(folder, spec, data_dir, t, f"train-{r}-{t}", extra) for t in order}
        speedups.append(pair[1]["wall_s"] / pair[2]["wall_s"])
        rows += [pair[1], pair[2]]
    speedup = statistics.median(speedups)
    return {"runs": rows, "speedups": speedups, "median_speedup": speedup, "jobs_ratio_floor": speedup / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs; the ratio is their median")
    parser.add_argument("--dry", action="store_true", help="a tiny study on synthetic data, to check the script")
    parser.add_argument("--scaling", action="store_true", help="also one trial alone with 1 and 2 threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec, extra, data_dir = ROOT / "specs" / "mgiad_small_cifar10.yaml", "", args.data_dir.resolve()
        if args.dry:
            sys.path.insert(0, str(ROOT))
            from tests import synthetic

            (folder / "tiny.yaml").write_text(synthetic.TINY_SPEC.replace("coarsest: 4", "coarsest: 2"))
            spec, extra, data_dir = (
                folder / "tiny.yaml",
                ", batch_size: 16",
                synthetic.write_cifar(folder / "data").parent,
            )
            (folder / "study.yaml").write_text(STUDY.format(spec=spec, extra=extra).replace("[8, 16]", "[2, 4]"))
        else:
            (folder / "study.yaml").write_text(STUDY.format(spec=spec, extra=extra))
        rows, ratios = [], []
        for r in range(args.rounds):  # interleaved: the order alternates between rounds
            order = (1, 2) if r % 2 == 0 else (2, 1)
            pair = {jobs: run(folder, data_dir, jobs, f"out-{r}-{jobs}") for jobs in order}
            ratios.append(pair[2]["wall_s"] / pair[1]["wall_s"])
            rows += [pair[1], pair[2]]
        result = {"runs": rows, "ratios": ratios, "median_ratio": statistics.median(ratios)}
        if args.scaling:
            extra = ["--batch-size", "16"] if args.dry else []
            result["one_trial"] = scaling(folder, spec, data_dir, args.rounds, extra)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
