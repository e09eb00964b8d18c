"""Wall time of a 4-trial, one-epoch study with ``--jobs 2`` against ``--jobs 1``, side by side.

Each study runs in a fresh output folder with the same study file, in rounds of one `--jobs 1` and
one `--jobs 2` run whose order alternates (the ratio is the median over rounds); the load average is
recorded before each run (a busy machine makes the ratio meaningless). ``--dry`` runs a tiny
version (synthetic data, the tiny test spec) to check that the script works.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs; the ratio is their median")
    parser.add_argument("--dry", action="store_true", help="a tiny study on synthetic data, to check the script")
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
    print(json.dumps({"runs": rows, "ratios": ratios, "median_ratio": statistics.median(ratios)}, indent=2))


if __name__ == "__main__":
    main()
