"""Text renderings of counts (rich tables, JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console
from rich.table import Table

from mgspec.count import Counts


def counts_json(counts: Counts) -> str:
    return json.dumps(counts.as_dict(), indent=2)


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
    return out.getvalue()


def counts_table(counts: Counts, console: Console) -> None:
    size = f"{counts.input_size}x{counts.input_size}"
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
        console.print(
            f"of which unused: {counts.unused:,} weights in {', '.join(counts.unused_slots)} "
            "(created but never applied: the paper's level-1 R/Pi, kept for count parity)"
        )
    console.print(
        "MACs count conv and linear multiply-accumulates (FLOPs = 2 x MACs); BN, ReLU and additions are not included."
    )
