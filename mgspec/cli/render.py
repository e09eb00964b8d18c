"""Text renderings of counts (rich tables, JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console
from rich.table import Table

from mgspec.count import Counts

#: Width of rich output written to a pipe or file: wide enough that no table or line wraps.
PIPE_WIDTH = 1000


def console() -> Console:
    """A rich console for stdout; piped or redirected, it does not wrap at 80 columns (or $COLUMNS)."""
    out = _Console()
    return out if out.is_terminal else _Unwrapped(width=PIPE_WIDTH)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """A closed pipe ends the command quietly with 141, like every other write (not rich's 1)."""
        raise BrokenPipeError()


class _Unwrapped(_Console):
    """The console of piped output: a table's title is a line of its own, never wrapped to the table."""

    def print(self, *objects, **kwargs) -> None:
        for item in objects:
            if isinstance(item, Table) and item.title:
                super().print(item.title, soft_wrap=True, highlight=False, markup=False)
                item.title = None
        kwargs.setdefault("soft_wrap", not any(isinstance(item, Table) for item in objects))
        super().print(*objects, **kwargs)


def counts_json(counts: Counts, cost: dict | None = None) -> str:
    data = counts.as_dict()
    if cost is not None:
        data["cost"] = cost
    return json.dumps(data, indent=2)


def counts_csv(counts: Counts) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "weights", "macs"])
    for level, weights in counts.by_level.items():
        writer.writerow(["level", level, weights, counts.macs_by_level.get(level, 0)])
    for op, weights in counts.by_operator.items():
        writer.writerow(["operator", op, weights, counts.macs_by_operator.get(op, 0)])
    writer.writerow(["unused", "", counts.unused, 0])
    writer.writerow(["total", "", counts.total, counts.macs])
    for p in counts.passes:
        writer.writerow(["pass", p["name"], "", p["macs_after"] - p["macs_before"]])
    return out.getvalue()


def millions(macs: int) -> str:
    return f"{macs / 1e6:,.1f}M"


def passes_line(counts: Counts) -> str:
    """What the optimisation passes removed, e.g. ``MACs 369.3M -> 331.6M after fold zeros -> ...``."""
    if not counts.passes:
        return "MACs of the literal algorithm (no optimisation passes)."
    steps = [millions(counts.passes[0]["macs_before"])]
    steps += [f"{millions(p['macs_after'])} after {p['name']}" for p in counts.passes]
    return f"MACs {' -> '.join(steps)} (--no-optimize counts the literal algorithm)."


def counts_table(counts: Counts, console: Console) -> None:
    h, w = (counts.input_size,) * 2 if isinstance(counts.input_size, int) else counts.input_size
    size = f"{h}x{w}"
    title = f"{counts.name} ({counts.family}): {counts.total:,} weights, {counts.macs:,} MACs per {size} image"
    for section, weights, macs in (
        ("level", counts.by_level, counts.macs_by_level),
        ("operator", counts.by_operator, counts.macs_by_operator),
    ):
        table = Table(title=title if section == "level" else None, title_justify="left")
        table.add_column(section)
        table.add_column("weights", justify="right")
        table.add_column("share", justify="right")
        table.add_column("MACs", justify="right")
        for key, value in weights.items():
            table.add_row(key, f"{value:,}", f"{100 * value / counts.total:.1f}%", f"{macs.get(key, 0):,}")
        table.add_row("total", f"{counts.total:,}", "100.0%", f"{counts.macs:,}", style="bold")
        console.print(table)
    if counts.unused:
        paper = set(counts.unused_slots) <= {"levels.l1.R", "levels.l1.Pi"}
        why = "the paper's level-1 R/Pi, kept for count parity" if paper else "no op of the graph reads them"
        console.print(
            f"of which unused: {counts.unused:,} weights in {', '.join(counts.unused_slots)} "
            f"(created but never applied: {why})"
        )
    console.print(passes_line(counts))
    console.print(
        "MACs count conv and linear multiply-accumulates (FLOPs = 2 x MACs); BN, ReLU and additions are not included."
    )


def cost_csv(cost: dict | None) -> str:
    """Rows ``cost,<pass>,<quantity>,<value>`` after the counts (nothing without --cost)."""
    if cost is None:
        return ""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for part in ("forward", "backward", "update", "step"):
        for key, value in cost[part].items():
            writer.writerow(["cost", part, key, value])
    for key, value in cost["floor_ms"].items():
        writer.writerow(["cost", "floor_ms", key, value])
    writer.writerow(["cost", "step", "activation_bytes", cost["activation_bytes"]])
    writer.writerow(["cost", "step", "activation_bytes_fused", cost["activation_bytes_fused"]])
    return out.getvalue()


def cost_table(cost: dict, console: Console) -> None:
    """The training step's cost per pass, and its floor on the reference GPU."""
    table = Table(
        title=f"cost of a training step: batch {cost['batch']}, {cost['dtype']} (docs/performance.md: The cost model)",
        title_justify="left",
    )
    for column in ("pass", "GFLOP", "MB unfused", "MB fused", "kernels (eager)", "kernels (fused)"):
        table.add_column(column, justify="left" if column == "pass" else "right")
    for part in ("forward", "backward", "update", "step"):
        c = cost[part]
        table.add_row(
            part,
            f"{c['flops'] / 1e9:,.2f}",
            f"{c['bytes_unfused'] / 1e6:,.1f}",
            f"{c['bytes_fused'] / 1e6:,.1f}",
            f"{c['kernels']:,}",
            f"{c['kernels_fused']:,}",
            style="bold" if part == "step" else None,
        )
    console.print(table)
    floor = cost["floor_ms"]
    console.print(
        f"activation memory {cost['activation_bytes'] / 1e6:,.1f} MB ({cost['activation_bytes_fused'] / 1e6:,.1f} MB "
        f"fused); floor {floor['unfused']:.3f} ms unfused, {floor['fused']:.3f} ms fused, at "
        f"{cost['bandwidth_Bps'] / 1e12:.2f} TB/s and {cost['peak_flops'] / 1e12:.0f} TFLOP/s (one H200, measured)"
    )


def paper_tables(selected: list, ours: dict | None, console: Console) -> None:
    """The paper's tables: each row's printed weight count beside ours, and its published accuracies
    (and ours, with ``--results``); each table's notes below it."""
    from mgspec import paper as registry

    for name in registry.TABLES:
        members = [r for r in selected if r.table == name]
        if not members:
            continue
        grid = Table(title=f"Table {name}: {registry.TITLES[name]}", title_justify="left")
        columns = ("row", "model", "data", "paper (k)", "ours", "", "test (std)", "train")
        for column in (*columns, *(("ours test (std, n)",) if ours is not None else ())):
            grid.add_column(column, justify="left" if column in ("row", "model", "data", "") else "right")
        notes = []
        for row in members:
            status = "✓" if registry.matches(row) else "✗"
            if row.note:
                notes.append(f"  {row.id}: {row.note.kind}: {row.note.text}")
                status += f" {row.note.kind}"
            differs = ((ours or {}).get(row.id) or {}).get("recipe")
            if differs:
                said = ", ".join(f"{k} {_value(v)} (paper {_value(p)})" for k, (v, p) in differs.items())
                notes.append(f"  {row.id}: * ours trained with another recipe: {said}")
            p = row.published
            grid.add_row(
                row.id, row.model, row.dataset, f"{row.printed_k:,}", f"{registry.count(row):,}", status,
                f"{p.test:.2f} ({p.std:.2f})", registry.percent(p.train), *_ours_cell(ours, row.id),
            )  # fmt: skip
        console.print(grid)
        for line in notes:
            console.print(line, highlight=False)


def _ours_cell(ours: dict | None, row_id: str) -> tuple[str, ...]:
    """The ``--results`` column of a row: empty where the study did not measure it."""
    if ours is None:
        return ()
    got = ours.get(row_id)
    mark = "*" if got and got.get("recipe") else ""
    if not got:
        return ("",)
    std = "-" if got["std"] is None else f"{got['std']:.2f}"  # one seed: no spread
    return (f"{got['mean']:.2f} ({std}, {got['seeds']}){mark}",)


def _value(value) -> str:
    return "none" if value is None else str(value)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def train_summary(summary: dict, directory, console: Console) -> None:
    table = Table(
        title=f"{summary['spec']} on {summary['dataset']} (seed {summary['seed']})",
        title_justify="left",
        show_header=False,
    )
    table.add_column("")
    table.add_column("", justify="right")
    rows = [
        ("weights", f"{summary['weights']:,}"),
        ("MACs / image", f"{summary['macs']:,}"),
        ("epochs", str(summary["epochs"])),
        ("best test accuracy", f"{_pct(summary['best_test_acc'])} (epoch {summary['best_epoch']})"),
        ("final test accuracy", _pct(summary["final_test_acc"])),
        ("final train accuracy", _pct(summary["final_train_acc"])),
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
        ("train images/s (last epoch)", f"{summary['images_per_s']:.0f}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print(f"run directory: {directory} (metrics.jsonl, checkpoint.pt, summary.json)")


def seeds_summary(result: dict, directory, console: Console, runs: str = "seed-*") -> None:
    seeds = result["seeds"]
    table = Table(
        title=f"{result['spec']} on {result['dataset']}: {len(seeds)} seeds ({', '.join(map(str, seeds))})",
        title_justify="left",
    )
    table.add_column("")
    table.add_column("mean ± std", justify="right")
    table.add_row("weights", f"{result['weights']:,}")
    table.add_row("MACs / image", f"{result['macs']:,}")
    for key, label in (
        ("best_test_acc", "best test accuracy"),
        ("final_test_acc", "final test accuracy"),
        ("final_train_acc", "final train accuracy"),
    ):
        table.add_row(label, plus_minus(result[key], 100, ".2f") + " %")
    table.add_row("wall time", plus_minus(result["wall_time_s"], 1, ".1f") + " s")
    console.print(table)
    console.print(f"runs in {directory}/{runs}; mean and std in {directory}/summary.json")


def plus_minus(value: dict, scale: float, spec: str) -> str:
    """``mean ± std`` of an aggregate (``{"mean", "std"}``); the mean alone for one seed."""
    mean = format(scale * value["mean"], spec)
    return mean if value["std"] is None else f"{mean} ± {format(scale * value['std'], spec)}"


def sweep_table(rows: list[dict], console: Console) -> None:
    """One row per combination; with several seeds, accuracies and times show as mean ± std."""
    table = Table()
    keys = [k for k in rows[0] if not (k.endswith("_std") and k.removesuffix("_std") in rows[0])]
    for key in keys:
        table.add_column(key + (" (mean ± std)" if f"{key}_std" in rows[0] else ""), justify="right")

    def cell(row: dict, k: str) -> str:
        v = row[k]
        if v is None:  # a combination none of whose seeds completed (or a std of one value)
            return "-"
        if f"{k}_std" in row:
            std = row[f"{k}_std"]
            if std is None:
                return _pct(v) if k.endswith("_acc") else f"{v:.1f}"
            return f"{100 * v:.2f} ± {100 * std:.2f}%" if k.endswith("_acc") else f"{v:.1f} ± {std:.1f}"
        if k.endswith("_acc"):
            return _pct(v)
        if isinstance(v, bool):
            return str(v)
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.1f}" if k.endswith("_s") else f"{v:g}"  # a swept value as given (lr 0.05)
        return str(v)

    for row in rows:
        table.add_row(*(cell(row, k) for k in keys))
    console.print(table)
