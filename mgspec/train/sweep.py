"""``mgspec sweep``: every combination of a grid of overrides, counted; the table and the plot.

Axes: each ``--grid PATH=V1,V2`` is a product axis; all ``--zip PATH=V1,V2`` lists together are
one axis whose values are taken side by side. The path ``levels`` sweeps the number of
resolution levels (the spec's first N, :mod:`mgspec.levels`). Training a sweep (``--train``) is
a study (:func:`mgspec.study.frontends.sweep`): every combination trains ``seeds`` times and its
row holds the mean and the standard deviation (``<metric>_std``).

Writes ``sweep.csv`` and ``sweep.json`` (one row per combination: the swept values, weights,
MACs, and with training the accuracies) and ``sweep.png``: weights against accuracy with the
Pareto front highlighted, or, without training, weights against the first swept parameter.
Every combination is validated before anything is trained or written.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import mgspec
from mgspec.errors import Location, SpecError
from mgspec.levels import LEVELS, spec_for
from mgspec.load import Source, point_key
from mgspec.runs import atomic_write, json_text

SpecInput = str | Path | Source


def parse_grid(text: str) -> tuple[str, list[str]]:
    """``PATH=V1,V2,...`` -> (path, values); commas inside brackets do not split (``share=[A,B],[A]``)."""
    path, sep, rest = text.partition("=")
    path = path.strip()
    if not sep or not path or not rest.strip():
        raise SpecError("expected PATH=V1,V2,...", Location(f"--grid {text}"), hint="e.g. --grid width=1,2,4")
    values, depth, current = [], 0, ""
    for char in rest:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    if any(not v for v in values) or depth != 0:
        raise SpecError("empty or unbalanced value in the grid", Location(f"--grid {text}"))
    return path, values


def combinations(
    grid: Sequence[tuple[str, list[str]]], zipped: Sequence[tuple[str, list[str]]] = ()
) -> list[dict[str, str]]:
    """Every combination: the product of the ``grid`` axes and of one axis of the ``zipped`` lists side by side."""
    paths = [p for p, _ in grid] + [p for p, _ in zipped]
    if len(set(paths)) != len(paths):
        raise SpecError("a path is swept twice", Location("--grid"), hint="give each path one --grid or --zip")
    if zipped and len({len(v) for _, v in zipped}) > 1:
        lengths = ", ".join(f"{p} has {len(v)}" for p, v in zipped)
        raise SpecError(f"--zip lists must have the same number of values ({lengths})", Location("--zip"))
    for path, values in grid:
        _refuse_repeats(f"--grid {path}=...", [point_key(_number(v)) for v in values], values)
    if zipped:
        rows = list(zip(*(values for _, values in zipped), strict=True))
        shown = [", ".join(f"{p}={v}" for (p, _), v in zip(zipped, row, strict=True)) for row in rows]
        _refuse_repeats("--zip", [point_key(*map(_number, row)) for row in rows], shown)
    axes = [[((p, v),) for v in values] for p, values in grid]
    if zipped:
        axes.append([tuple((p, values[i]) for p, values in zipped) for i in range(len(zipped[0][1]))])
    return [dict(pair for part in parts for pair in part) for parts in itertools.product(*axes)]


def _refuse_repeats(where: str, keys: list[tuple[str, ...]], shown: list[str]) -> None:
    """A value given twice (``width=1,1.0``) builds the same network twice: refused, naming both."""
    for i, key in enumerate(keys):
        if key in keys[:i]:
            first = keys.index(key)
            raise SpecError(
                f"{shown[i]!r} (value {i}) repeats {shown[first]!r} (value {first}): both build the same network",
                Location(where),
                hint="list each value once",
            )


#: Sweep paths under this prefix are training options (``train.lr``): they change no count.
TRAIN = "train."


def _overrides(overrides: Sequence[str], combo: dict[str, str]) -> list[str]:
    return [*overrides, *(f"{p}={v}" for p, v in combo.items() if p != LEVELS and not p.startswith(TRAIN))]


def _number(text: str) -> int | float | str:
    """A swept value as a number where it is one (``nan`` and ``inf`` stay text: JSON has no such number)."""
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


def count_rows(
    spec_path: SpecInput, overrides: Sequence[str], combos: Sequence[dict[str, str]], zipped: Sequence[str] = ()
) -> list[dict]:
    """Weights and MACs of every combination; an error in a swept value names its ``--grid`` (or
    ``--zip``) option, not the ``--set`` it became."""
    rows = []
    for combo in combos:
        try:
            counts = mgspec.count_spec(spec_for(spec_path, combo), _overrides(overrides, combo))
        except SpecError as exc:
            where = exc.location.source if exc.location is not None else None
            swept = next((p for p, v in combo.items() if where == f"--set {p}={v}"), None)
            if swept is None:
                raise
            option = "--zip" if swept in zipped else "--grid"
            raise SpecError(exc.message, Location(f"{option} {swept}={combo[swept]}"), exc.field, exc.hint) from None
        rows.append({**{p: _number(v) for p, v in combo.items()}, "weights": counts.total, "macs": counts.macs})
    return rows


def pareto(rows: list[dict], x: str = "weights", y: str = "best_test_acc") -> list[int]:
    """Indices of the rows no other row beats (fewer or equal weights and higher accuracy), by weights."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i][x], -rows[i][y]))
    front, best = [], float("-inf")
    for i in order:
        if rows[i][y] > best:
            front.append(i)
            best = rows[i][y]
    return front


def write_outputs(rows: list[dict], paths: list[str], out: Path, trained: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    written = [out / "sweep.csv", out / "sweep.json", out / "sweep.png"]
    table, text = buffer.getvalue(), json_text(rows)  # a non-finite metric is null, never a bare NaN
    atomic_write(written[0], lambda tmp: tmp.write_text(table))
    atomic_write(written[1], lambda tmp: tmp.write_text(text))
    plot(rows, paths, written[2], trained)
    return written


def _label(row: dict, paths: list[str]) -> str:
    return ", ".join(f"{p.rsplit('.', 1)[-1]}={row[p]}" for p in paths)


def _selected_metric(row: dict) -> str:
    return "best_val_acc" if row.get("best_val_acc") is not None else "best_test_acc"


def selected_accuracy(row: dict) -> float | None:
    """The accuracy a trained row was selected on: validation where it held out a split, else test."""
    return row.get(_selected_metric(row))


def plot(rows: list[dict], paths: list[str], target: Path, trained: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if trained:
        # The accuracy each combination was selected on (validation where it held out a split; none if it failed).
        rows = [{**r, "selected": accuracy} for r in rows if (accuracy := selected_accuracy(r)) is not None]
        front = pareto(rows, y="selected")
        xs = [r["weights"] for r in rows]
        ys = [100 * r["selected"] for r in rows]
        errors = [100 * (r.get(f"{_selected_metric(r)}_std") or 0.0) for r in rows]
        metric = {_selected_metric(r) for r in rows}
        if any(errors):
            ax.errorbar(xs, ys, yerr=errors, fmt="none", ecolor="0.6", capsize=3, zorder=1)
        ax.scatter(xs, ys, color="0.6", label="configurations", zorder=2)
        fx = [xs[i] for i in front]
        fy = [ys[i] for i in front]
        ax.plot(fx, fy, "o-", color="tab:red", label="Pareto front", zorder=3)
        for i, row in enumerate(rows):
            ax.annotate(_label(row, paths), (xs[i], ys[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("weights")
        seeds = max((r.get("seeds", 1) for r in rows), default=1)
        names = {"best_val_acc": "validation", "best_test_acc": "test"}
        which = names[next(iter(metric))] if len(metric) == 1 else "validation (or test)"
        ax.set_ylabel(f"best {which} accuracy (%)" + (f", mean ± std of {seeds} seeds" if seeds > 1 else ""))
        ax.set_xscale("log")
        ax.set_title("weights vs accuracy")
    else:
        first, rest = paths[0], paths[1:]
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(row[p] for p in rest), []).append(row)
        numeric = all(isinstance(r[first], int | float) for r in rows)
        for key, members in groups.items():
            xs = [r[first] if numeric else str(r[first]) for r in members]
            label = ", ".join(f"{p.rsplit('.', 1)[-1]}={v}" for p, v in zip(rest, key, strict=True)) or None
            ax.plot(xs, [r["weights"] for r in members], "o-", label=label)
        ax.set_xlabel(first)
        ax.set_ylabel("weights")
        ax.set_title(f"weights vs {first}")
        if len(groups) > 1:
            ax.legend(fontsize=7)
    if trained:
        ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    atomic_write(target, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def sweep(
    spec_path: SpecInput,
    overrides: Sequence[str],
    grid: Sequence[tuple[str, list[str]]],
    out: str | Path,
    *,
    zipped: Sequence[tuple[str, list[str]]] = (),
) -> tuple[list[dict], list[Path]]:
    """Count every combination; write the table and the plot into ``out``."""
    combos = combinations(grid, zipped)
    rows = count_rows(spec_path, overrides, combos, [p for p, _ in zipped])  # validates every combination first
    return rows, write_outputs(rows, list(combos[0]), Path(out), trained=False)
