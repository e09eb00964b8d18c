"""``mgspec sweep``: every combination of a grid of overrides, counted (and optionally trained).

Writes ``sweep.csv`` and ``sweep.json`` (one row per combination: the swept values, weights,
MACs, and with training the accuracies) and ``sweep.png``: weights against accuracy with the
Pareto front highlighted, or, without training, weights against the first swept parameter.
Every combination is validated before anything is trained or written.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import mgspec
from mgspec.errors import Location, SpecError


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


def combinations(grid: Sequence[tuple[str, list[str]]]) -> list[dict[str, str]]:
    paths = [p for p, _ in grid]
    if len(set(paths)) != len(paths):
        raise SpecError("a path is swept twice", Location("--grid"), hint="give each path one --grid")
    return [dict(zip(paths, values, strict=True)) for values in itertools.product(*(v for _, v in grid))]


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def count_rows(spec_path: str | Path, overrides: Sequence[str], grid: Sequence[tuple[str, list[str]]]) -> list[dict]:
    rows = []
    for combo in combinations(grid):
        counts = mgspec.count_spec(spec_path, [*overrides, *(f"{p}={v}" for p, v in combo.items())])
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
    written[0].write_text(buffer.getvalue())
    written[1].write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, paths, written[2], trained)
    return written


def _label(row: dict, paths: list[str]) -> str:
    return ", ".join(f"{p.rsplit('.', 1)[-1]}={row[p]}" for p in paths)


def plot(rows: list[dict], paths: list[str], target: Path, trained: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if trained:
        front = pareto(rows)
        xs = [r["weights"] for r in rows]
        ys = [100 * r["best_test_acc"] for r in rows]
        ax.scatter(xs, ys, color="0.6", label="configurations", zorder=2)
        fx = [xs[i] for i in front]
        fy = [ys[i] for i in front]
        ax.plot(fx, fy, "o-", color="tab:red", label="Pareto front", zorder=3)
        for i, row in enumerate(rows):
            ax.annotate(_label(row, paths), (xs[i], ys[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("weights")
        ax.set_ylabel("best test accuracy (%)")
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
    fig.savefig(target)
    plt.close(fig)


def sweep(
    spec_path: str | Path,
    overrides: Sequence[str],
    grid: Sequence[tuple[str, list[str]]],
    out: str | Path,
    train: Callable[[list[str], Path], dict] | None = None,
) -> tuple[list[dict], list[Path]]:
    """Count (and with ``train``, train) every combination; write the table and the plot into ``out``.

    ``train(overrides, run_dir)`` returns a run summary (see :func:`mgspec.train.trainer.train`).
    """
    out = Path(out)
    paths = [p for p, _ in grid]
    rows = count_rows(spec_path, overrides, grid)  # validates every combination first
    if train is not None:
        for i, (row, combo) in enumerate(zip(rows, combinations(grid), strict=True)):
            slug = "-".join(f"{p.rsplit('.', 1)[-1]}{v}" for p, v in combo.items())
            run_dir = out / "runs" / f"{i:03d}-{re.sub(r'[^A-Za-z0-9_.]+', '', slug)}"
            summary = train([*overrides, *(f"{p}={v}" for p, v in combo.items())], run_dir)
            for key in ("best_test_acc", "final_test_acc", "final_train_acc", "wall_time_s"):
                row[key] = summary[key]
    return rows, write_outputs(rows, paths, out, train is not None)
