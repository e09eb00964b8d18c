"""``mgspec sweep --train`` and ``mgspec reproduce`` as studies, run by :func:`mgspec.study.runner.run`.

Each builds a study in memory (:mod:`mgspec.study.inline`), writes it as ``<out>/study.yaml``
and runs it like ``mgspec study run`` would, so both have ``--jobs``, the Slurm executor,
resume on re-run (finished trials are not trained again) and failure tolerance (a diverged
point is recorded as failed, the others finish). Trials live in ``<out>/trials/<n>-seed<k>/``.

- **sweep**: every ``--grid`` is a grid axis, all ``--zip`` lists one zip axis, every ``--set``
  a grid axis of one value; ``sweep.csv``/``sweep.json``/``sweep.png`` are written from the
  trials' summaries (mean and ``<metric>_std`` over seeds, one row per combination).
- **reproduce**: a paper row is a one-point study (the paper's protocol: no validation split);
  ``<out>/summary.json`` holds every seed's summary, their aggregate and the row's record.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mgspec import runs
from mgspec.errors import Location, SpecError
from mgspec.load import Source
from mgspec.study import inline, runner
from mgspec.study import points as study_points
from mgspec.train import sweep as sweeping

#: Metrics of a trained sweep row; with several seeds each is the mean and ``<name>_std`` the deviation.
METRICS = ("best_test_acc", "final_test_acc", "final_train_acc", "wall_time_s")
VAL_METRIC = "best_val_acc"


@dataclass
class Result:
    """What a front-end's study produced: its report, per-seed summaries, and the exit status."""

    report: dict
    code: int
    out: Path


#: Where a sweep's or a row's ``train:`` came from, as errors name it.
TRAINING_OPTIONS = "the training options (--epochs, --batch-size, --lr, ...)"


def _name(prefix: str, text: str) -> str:
    return (prefix + re.sub(r"[^A-Za-z0-9_.-]+", "_", text))[:64]


def _run(
    data: dict,
    origin: str,
    out: Path,
    options: runner.Options,
    log: Callable[[str], None],
    origins: dict[str, str] | None = None,
) -> Result:
    """Check the study and open it in its storage, then write it into ``out`` and run it.

    Nothing is written when it is refused: not for a bad point, not for a bad storage (refused
    before a journal is made), not for a changed study (``<out>/study.yaml`` keeps the study the
    storage holds, since the storage is opened first).
    """
    study = inline.build(data, origin, origins)
    checked = runner.check(study, options)
    runner.open_handle(study, out, options)
    report, code, out = runner.run(inline.write(study, out), out, options, log, checked=checked)
    return Result(report, code, out)


def sweep_study(
    spec: Path,
    sets: Sequence[str],
    grid: Sequence[tuple[str, list[str]]],
    zipped: Sequence[tuple[str, list[str]]],
    *,
    dataset: str,
    train: dict,
    seeds: int = 1,
    seed: int = 0,
    name: str | None = None,
) -> dict:
    """The study mapping of a sweep (``spec`` a file; ``--set`` paths a sweep also varies are dropped)."""
    swept = {p for p, _ in (*grid, *zipped)}
    fixed = {}
    for override in sets:
        path, _, value = override.partition("=")
        if path.strip() not in swept:
            fixed[path.strip()] = [sweeping._number(value.strip())]
    return {
        "name": _name("sweep-", Path(spec).stem) if name is None else name,
        "spec": str(Path(spec).resolve()),
        "dataset": dataset,
        "train": train,
        "seeds": seeds,
        "seed": seed,
        "grid": {**{p: [sweeping._number(v) for v in values] for p, values in grid}, **fixed},
        **({"zip": {p: [sweeping._number(v) for v in values] for p, values in zipped}} if zipped else {}),
    }


def sweep(
    spec: Path,
    sets: Sequence[str],
    grid: Sequence[tuple[str, list[str]]],
    out: Path,
    *,
    zipped: Sequence[tuple[str, list[str]]] = (),
    dataset: str,
    train: dict,
    seeds: int = 1,
    seed: int = 0,
    name: str | None = None,
    options: runner.Options = runner.DEFAULT,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], list[Path], Result]:
    """Train every combination of a sweep as a study; the rows, the files written and the study's result."""
    if not isinstance(spec, Path) or not spec.is_file():  # stdin: its runs must name a file to reproduce
        where = Location(spec.name if isinstance(spec, Source) else str(spec))
        raise SpecError("sweep --train needs the spec as a file", where, hint="save it to a file and name that")
    combos = sweeping.combinations(grid, zipped)
    counted = sweeping.count_rows(spec, sets, combos, [p for p, _ in zipped])  # errors at their --grid/--zip
    data = sweep_study(spec, sets, grid, zipped, dataset=dataset, train=train, seeds=seeds, seed=seed, name=name)
    origins = {"seeds": "--seeds", "seed": "--seed", "zip": "--zip", "name": "--name", "train": TRAINING_OPTIONS}
    result = _run(data, "--grid", out, options, log, origins)
    fixed = {p: v[0] for p, v in data["grid"].items() if p not in combos[0]}
    rows = sweep_rows(result.report, combos, fixed, counted)
    return rows, sweeping.write_outputs(rows, list(combos[0]), out, trained=True), result


def sweep_rows(report: dict, combos: list[dict[str, str]], fixed: dict, counted: list[dict]) -> list[dict]:
    """One row per combination: its values, weights, MACs and the mean (and std) of each metric over seeds.

    Weights and MACs are those of the network the trials trained (fitted to the dataset, as each
    trial recorded them, also when it failed). ``failed`` counts the seeds whose training failed,
    ``unfinished`` those not trained to the end yet (interrupted, or still waiting); a re-run
    continues the unfinished ones. A combination none of whose seeds completed has empty metrics.
    """
    by_point: dict[str, list[dict]] = {}
    for trial in report["trials"]:
        by_point.setdefault(study_points.key(trial["params"]), []).append(trial)
    trials_of = [by_point.get(study_points.key({**fixed, **_values(combo)}), []) for combo in combos]
    summaries_of = [_summaries(trials) for trials in trials_of]
    with_val = any(s.get(VAL_METRIC) is not None for summaries in summaries_of for s in summaries)
    metrics = METRICS + ((VAL_METRIC,) if with_val else ())
    seeds = max((len(trials) for trials in trials_of), default=1)
    rows = []
    for combo, base, trials, summaries in zip(combos, counted, trials_of, summaries_of, strict=True):
        fitted = next((t for t in trials if t.get("weights") is not None), base)
        row = {**_values(combo), "weights": fitted["weights"], "macs": fitted["macs"]}
        if seeds > 1:
            row["seeds"] = len(summaries)
        for name in metrics:
            values = [s[name] for s in summaries if s.get(name) is not None]
            row[name] = statistics.fmean(values) if values else None
            if seeds > 1:
                row[f"{name}_std"] = runs.spread(values)
        row["failed"] = sum(1 for t in trials if t["state"] == "failed")
        row["unfinished"] = sum(1 for t in trials if t["state"] not in ("complete", "failed", "pruned"))
        rows.append(row)
    return rows


def _values(combo: dict[str, str]) -> dict:
    return {p: sweeping._number(v) for p, v in combo.items()}


def _summaries(trials: list[dict]) -> list[dict]:
    """The summaries of the completed ``trials``, by seed."""
    done = sorted((t for t in trials if t["state"] == "complete"), key=lambda t: t["seed"])
    return [json.loads((Path(t["run_dir"]) / runs.SUMMARY).read_text()) for t in done]


def reproduce(
    row,
    out: Path,
    *,
    seeds: int = 1,
    seed: int = 0,
    train: dict | None = None,
    experiment: dict | None = None,
    options: runner.Options = runner.DEFAULT,
    log: Callable[[str], None] = print,
) -> tuple[Result, dict | None]:
    """Train a paper row as a one-point study; the result and the aggregate over its completed seeds.

    ``<out>/summary.json`` (written when a seed completed) holds every seed's summary, their
    aggregate and ``experiment`` (the row's record), as ``mgspec train --seeds`` writes it.
    """
    data = inline.from_row(row, seeds=seeds, train=train, seed=seed)
    data["experiment"] = experiment
    origins = {"seeds": "--seeds", "seed": "--seed", "train": TRAINING_OPTIONS}
    result = _run(data, f"reproduce {row.id}", out, options, log, origins)
    summaries = _summaries(result.report["trials"])
    aggregate = runs.write_seed_summary(out, summaries, experiment) if summaries else None
    return result, aggregate
