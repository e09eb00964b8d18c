"""The MGiaD paper's experiments by name: every row of Tables I-IX as data.

Each :class:`Row` says how to build the network (a shipped spec and ``--set`` overrides),
what to train it on, what the paper prints for it (the weight count in thousands, test
accuracy mean and standard deviation over seeds, train accuracy), and, where our exact count
does not round to the printed one or where the printed one follows from a variant, a
:class:`Note` with the documented reason and the exact counts it rests on (tests check every
stated count against :func:`mgspec.count_spec`).

Row ids are ``TABLE/LABEL``: ``II/cK=64,gs=4``, ``VII/gs=8,width=2``, ``III/ResNet18``.
Nothing here imports torch: ``mgspec paper`` lists, counts and draws without it.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import mgspec
from mgspec import registry
from mgspec.errors import SpecError
from mgspec.paper_rows import (  # noqa: F401  (re-exported: mgspec.paper.Row and friends)
    CIFAR100,
    KINDS,
    ONE_BN,
    ONE_BN_MGNET,
    ONE_CHANNEL,
    Note,
    Published,
    Row,
    Stated,
)
from mgspec.paper_tables import (
    _table_i,
    _table_ii,
    _table_iii,
    _table_iv,
    _table_ix,
    _table_v,
    _table_vi,
    _table_vii,
    _table_viii,
)

SPECS = registry.SPECS  # the built-in specs, inside the package (works from a wheel in any directory)

TABLES = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX")

TITLES = {
    "I": "baselines, CIFAR-10",
    "II": "MGiaD on CIFAR-10 (coarsest cK, group size gs, width λ)",
    "III": "FashionMNIST, 4 resolution levels 64-128-256-256",
    "IV": "FashionMNIST, 3 resolution levels 16-32-64",
    "V": "CIFAR-100, cK = 64",
    "VI": "grouped MgNet_{A,B} on CIFAR-10",
    "VII": "width λ on CIFAR-10, cK = 64",
    "VIII": "post-smoothing η_post on CIFAR-10, λ = 3, cK = 64",
    "IX": "CIFAR-100, λ and η_post, cK = 64",
}

DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "fashionmnist": "FashionMNIST"}


def percent(value: float) -> str:
    """An accuracy as the paper prints it: two decimals, 100 as 100."""
    return "100" if value == 100 else f"{value:.2f}"


ROWS: tuple[Row, ...] = tuple(
    [*_table_i(), *_table_ii(), *_table_iii(), *_table_iv(), *_table_v(), *_table_vi(), *_table_vii()]
    + [*_table_viii(), *_table_ix()]
)

BY_ID = {row.id: row for row in ROWS}


def rows(table: str | None = None) -> list[Row]:
    """The registry, or one table of it (``II`` or ``2``)."""
    if table is None:
        return list(ROWS)
    return [row for row in ROWS if row.table == table_id(table)]


def selection(table: str | None = None, results: Path | None = None) -> tuple[list[Row], dict | None]:
    """``mgspec paper``'s rows: those of ``table`` (all without one) and, with ``results`` (a study
    directory, e.g. of ``mgspec reproduce``), our accuracy of each row the study measured
    (:func:`mgspec.study.results.accuracies`), else None."""
    selected = rows(table)
    if results is None:
        return selected, None
    from mgspec.study.results import accuracies

    return selected, accuracies(selected, results)


def table_id(text: str) -> str:
    """``II``, ``ii`` or ``2`` -> ``II``."""
    name = text.strip().upper()
    if name.isdigit() and 1 <= int(name) <= len(TABLES):
        name = TABLES[int(name) - 1]
    if name not in TABLES:
        raise SpecError(f"unknown table {text!r}", hint="tables are " + ", ".join(TABLES))
    return name


def _normal(text: str) -> str:
    return text.replace(" ", "").replace("λ", "width").replace("η_post", "post").lower()


def find(row_id: str) -> Row:
    """The row named ``row_id`` (case and spaces do not matter; ``λ`` is ``width``)."""
    wanted = _normal(row_id)
    for row in ROWS:
        if _normal(row.id) == wanted:
            return row
    close = difflib.get_close_matches(wanted, [_normal(r.id) for r in ROWS], n=4, cutoff=0.6)
    names = [r.id for r in ROWS if _normal(r.id) in close]
    table = wanted.split("/", 1)[0].upper()
    if not names and table in TABLES:
        names = [r.id for r in rows(table)][:6]
    hint = ("did you mean " + ", ".join(names) + "? ") if names else ""
    raise SpecError(f"no paper row {row_id!r}", hint=hint + "`mgspec paper` lists every row")


@cache
def count(row: Row) -> int:
    """Our exact weight count of the row's network."""
    return mgspec.count_spec(row.spec_path, list(row.overrides)).total


def stated_count(stated: Stated) -> int:
    return mgspec.count_spec(registry.spec_path(stated.spec), list(stated.overrides)).total


def matches(row: Row) -> bool:
    """Whether our count rounds to the printed one (in thousands)."""
    return round(count(row) / 1000) == row.printed_k


def record(row: Row) -> dict:
    """The row as plain data (JSON, CSV, run directories)."""
    ours = count(row)
    return {
        "id": row.id,
        "table": row.table,
        "model": row.model,
        "spec": f"specs/{row.spec}.yaml",
        "overrides": list(row.overrides),
        "dataset": row.dataset,
        "printed_k": row.printed_k,
        "weights": ours,
        "match": matches(row),
        "note": row.note.kind if row.note else None,
        "reason": row.note.text if row.note else None,
        "test_acc": row.published.test,
        "test_std": row.published.std,
        "train_acc": row.published.train,
    }


def _with_ours(row: Row, ours: dict | None) -> dict:
    """The row's record, with our measured accuracy (``mgspec paper --results``) when ``ours`` is given."""
    rec = record(row)
    if ours is not None:
        got = ours.get(row.id) or {}
        rec.update(ours_test_acc=got.get("mean"), ours_test_std=got.get("std"), ours_seeds=got.get("seeds"),
                   ours_recipe_differs=got.get("recipe") or None)  # fmt: skip
    return rec


def to_json(selected: Iterable[Row], ours: dict | None = None) -> str:
    return json.dumps([_with_ours(r, ours) for r in selected], indent=2, ensure_ascii=False) + "\n"


def to_csv(selected: Iterable[Row], ours: dict | None = None) -> str:
    import csv
    import io

    records = [_with_ours(r, ours) for r in selected]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({**rec, "overrides": " ".join(rec["overrides"])})
    return buffer.getvalue()


# -- Figure 7 ---------------------------------------------------------------------------------


def _figure_family(row: Row) -> str | None:
    """Which of Figure 7's series a CIFAR-10 row belongs to (None: not in the figure)."""
    if row.dataset != "cifar10":
        return None
    if row.model.startswith("ResNet"):
        return "ResNet"
    if row.spec == "mgnet_grouped_cifar10":
        return "MgNet_{A,B} (grouped)"
    if row.model.startswith("MgNet_{A,B}"):
        return "MgNet_{A,B}"
    if row.table == "II" and "width=" not in row.label:
        gs = dict(part.split("=") for part in row.label.split(","))["gs"]
        return f"MGiaD gs={gs}" if gs in ("4", "8") else None
    return None


def figure7_points() -> dict[str, list[tuple[int, float]]]:
    """The paper's published (weights, test accuracy) points of Figure 7, by series.

    A network printed in several tables is one point; where its accuracy differs between them
    (MgNet_{A,B} small: 90.58 in Table I, 91.26 in Table II) the later table's is drawn.
    """
    series: dict[str, dict[int, float]] = {}
    for row in ROWS:
        family = _figure_family(row)
        if family is not None:
            series.setdefault(family, {})[row.printed_k * 1000] = row.published.test
    return {name: sorted(points.items()) for name, points in series.items()}


def load_sweep(path: str | Path) -> list[dict]:
    """The rows of a trained sweep: ``sweep.json`` or the directory holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / "sweep.json"
    try:
        rows_ = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError("no sweep results here", mgspec.Location(str(path)), hint="run mgspec sweep --train") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"not a sweep.json: {exc.msg}", mgspec.Location(str(path), exc.lineno, exc.colno)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"not a sweep.json: {str(exc)[:200]}", mgspec.Location(str(path))) from None
    if not isinstance(rows_, list) or not rows_ or not all(isinstance(r, dict) for r in rows_):
        raise SpecError("not a sweep.json (expected a list of rows)", mgspec.Location(str(path)))
    if not all("weights" in r and "best_test_acc" in r for r in rows_):
        raise SpecError(
            "the sweep was not trained (no accuracies)",
            mgspec.Location(str(path)),
            hint="run mgspec sweep --train",
        )
    for i, row in enumerate(rows_):
        weights, accuracy = row["weights"], row["best_test_acc"]
        if isinstance(weights, bool) or not isinstance(weights, int) or weights < 1:
            raise SpecError(
                f"row {i}: weights must be a positive whole number, not {weights!r:.40}", mgspec.Location(str(path))
            )
        if isinstance(accuracy, bool) or not isinstance(accuracy, int | float) or not 0 <= accuracy <= 1:
            raise SpecError(
                f"row {i}: best_test_acc must be a number from 0 to 1, not {accuracy!r:.40}", mgspec.Location(str(path))
            )
    return rows_


def figure7(sweeps: Sequence[str | Path], target: str | Path, labels: Sequence[str] | None = None) -> Path:
    """Redraw Figure 7: test accuracy against weights from trained sweeps, the paper's points overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = [load_sweep(s) for s in sweeps]
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    markers = iter("osD^v<>ph*")
    for name, points in figure7_points().items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, linestyle="--", marker=next(markers), fillstyle="none", alpha=0.7, label=f"paper: {name}")
    for i, sweep_rows in enumerate(loaded):
        name = labels[i] if labels and i < len(labels) else Path(sweeps[i]).stem
        ordered = sorted(sweep_rows, key=lambda r: r["weights"])
        ax.plot(
            [r["weights"] for r in ordered],
            [100 * r["best_test_acc"] for r in ordered],
            "o-",
            linewidth=2,
            label=f"ours: {name}",
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_xlabel("weights")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Figure 7: accuracy against weights, CIFAR-10")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target)
    plt.close(fig)
    return target
