"""A study's results: its trials, the mean and std over seeds per point, and the Pareto front.

The JSON shape is ``{"study", "objectives", "trials": [{"number", "state", "params", "seed",
"weights", "macs", "test_acc", "val_acc", "run_dir", "reason"}], "points": [{"params", "weights",
"macs", "acc_mean", "acc_std", "val_mean", "val_std", "seeds"}], "pareto": [trial numbers]}``.
Trials a later trial continues (``retry_of``) and spare draws are left out. The Pareto front is
over the study's objectives, or accuracy against weights for a study with one objective; its
accuracy is the one each trial was selected on: validation accuracy where the trial held out a
validation split (``val_acc``), else test accuracy. ``test_acc`` and ``acc_mean`` are always
test accuracy (at the epoch chosen on validation, where there is a split).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from mgspec.runs import atomic_write, spread
from mgspec.study import claims, require

STATES = {"COMPLETE": "complete", "FAIL": "failed", "PRUNED": "pruned", "RUNNING": "running", "WAITING": "waiting"}


def trials(handle, out: Path | None = None) -> list[dict]:
    """One row per trial that counts (continued and spare trials left out).

    A trial records its run directory relative to the study's directory; ``out`` (that
    directory, where the reader finds it) is joined to it. Absolute ones stay as recorded.
    """
    raw = handle.get_trials(deepcopy=False)
    continued = {t.user_attrs["retry_of"] for t in raw if "retry_of" in t.user_attrs}
    rows = []
    for t in raw:
        attrs = t.user_attrs
        if t.number in continued or attrs.get("spare"):
            continue
        state = STATES.get(t.state.name, t.state.name.lower())
        if state == "running" and claims.stale(t):  # marked interrupted, or its worker is gone
            state = "interrupted"
        rows.append(
            {
                "number": t.number,
                "state": state,
                "params": dict(t.params) or json.loads(attrs.get("point", "{}")),
                "seed": attrs.get("seed"),
                "weights": attrs.get("weights"),
                "macs": attrs.get("macs"),
                "test_acc": attrs.get("test_acc"),
                "val_acc": attrs.get("val_acc"),
                "run_dir": _run_dir(attrs.get("run_dir"), out),
                "reason": attrs.get("reason"),
            }
        )
    return rows


def _run_dir(recorded: str | None, out: Path | None) -> str | None:
    return str(Path(out).resolve() / recorded) if recorded is not None and out is not None else recorded


def points(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation of the test accuracy over the seeds of each completed point."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row["state"] == "complete":
            groups.setdefault(json.dumps(row["params"], sort_keys=True), []).append(row)
    out = []
    for members in groups.values():
        accs = [m["test_acc"] for m in members]
        vals = [m["val_acc"] for m in members if m["val_acc"] is not None]
        out.append(
            {
                "params": members[0]["params"],
                "weights": members[0]["weights"],
                "macs": members[0]["macs"],
                "acc_mean": statistics.fmean(accs),
                "acc_std": spread(accs),
                "val_mean": statistics.fmean(vals) if vals else None,
                "val_std": spread(vals),
                "seeds": sorted(m["seed"] for m in members),
            }
        )
    return sorted(out, key=lambda p: (p["weights"], json.dumps(p["params"], sort_keys=True)))


def _value(row: dict, name: str) -> float:
    """An objective of a trial; accuracy is the one it was selected on (validation where it had a split)."""
    if name != "accuracy":
        return row[name]
    return row["test_acc"] if row.get("val_acc") is None else row["val_acc"]


def dominates(a: dict, b: dict, objectives: dict[str, str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for name, direction in objectives.items():
        x, y = _value(a, name), _value(b, name)
        if direction == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def pareto(rows: list[dict], objectives: dict[str, str]) -> list[int]:
    """Numbers of the completed trials no other completed trial dominates."""
    if len(objectives) < 2:
        objectives = {"accuracy": "maximize", "weights": "minimize"}
    done = [r for r in rows if r["state"] == "complete"]
    return sorted(r["number"] for r in done if not any(dominates(o, r, objectives) for o in done))


def build(name: str, objectives: dict[str, str], handle, out: Path | None = None) -> dict:
    """The report of a study; ``out`` is its directory, which the trials' run directories are in."""
    rows = trials(handle, out)
    return {
        "study": name,
        "objectives": objectives,
        "trials": rows,
        "points": points(rows),
        "pareto": pareto(rows, objectives),
    }


def _ran_in(optuna, storage, names: list[str], directory: Path) -> list[str]:
    """The studies among ``names`` with a trial whose run directory is in ``directory``.

    A run directory recorded relative (a journal's) is under the directory of that journal: in
    ``directory`` when the storage is its journal, else nowhere this can tell.
    """
    from optuna.storages import JournalStorage

    here = directory.resolve()
    journal = isinstance(storage, JournalStorage)
    found = []
    for name in names:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        dirs = [Path(t.user_attrs["run_dir"]) for t in trials if t.user_attrs.get("run_dir")]
        if any(d.resolve().is_relative_to(here) if d.is_absolute() else journal for d in dirs):
            found.append(name)
    return found


def load(name: str | None, storage, directory: Path | None = None) -> tuple[str, dict[str, str], object]:
    """The Optuna study ``name`` in ``storage``; when ``name`` is None, the only one there, or the one
    whose trials ran in ``directory`` (a database holds the studies of many directories)."""
    from mgspec.errors import SpecError
    from mgspec.study.storage import DEFINITION

    optuna = require("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if not names:
        raise SpecError("the storage holds no study yet", hint="run it first: mgspec study run STUDY.yaml")
    if name is None:
        found = names if len(names) == 1 or directory is None else _ran_in(optuna, storage, names, directory)
        if len(found) != 1:
            listed = ", ".join(map(repr, sorted(found or names)[:8])) + (", ..." if len(found or names) > 8 else "")
            if directory is not None and not found:
                message = f"none of the {len(names)} studies in the storage ran in {directory}: {listed}"
            else:
                ran = f", {len(found)} of which ran in {directory}" if directory is not None else ""
                message = f"the storage holds {len(names)} studies{ran}: {listed}"
            raise SpecError(message, hint="name the study file instead of its directory")
        name = found[0]
    if name not in names:
        raise SpecError(f"no study {name!r} in the storage yet", hint="run it first: mgspec study run STUDY.yaml")
    handle = optuna.load_study(study_name=name, storage=storage)
    definition = handle.user_attrs.get(DEFINITION) or {}
    objectives = (definition.get("search") or {}).get("objectives") or definition.get("objectives")
    return name, objectives or {"accuracy": "maximize"}, handle


def status(report: dict) -> int:
    """0 when every trial completed (or was pruned), 1 when some failed or did not finish."""
    return 0 if all(t["state"] in ("complete", "pruned") for t in report["trials"]) else 1


def _setting(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def csv_text(report: dict) -> str:
    buffer = io.StringIO()
    fields = ["number", "state", "params", "seed", "weights", "macs", "test_acc", "val_acc", "pareto", "run_dir"]
    fields.append("reason")
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    front = set(report["pareto"])
    for t in report["trials"]:
        writer.writerow({**t, "params": _setting(t["params"]), "pareto": t["number"] in front})
    return buffer.getvalue()


def accuracy_label(trials: list[dict]) -> str:
    """What :func:`_value`'s accuracy is for these trials: validation, test, or each its own."""
    held_out = {t.get("val_acc") is not None for t in trials}
    if held_out == {True}:
        return "validation"
    return "test" if held_out == {False} else "validation or test"


def drawn(report: dict) -> dict:
    """What :func:`plot` draws: (weights, accuracy %) of every completed trial and of the front, by weights."""
    done = [t for t in report["trials"] if t["state"] == "complete"]
    front = sorted((t for t in done if t["number"] in set(report["pareto"])), key=lambda t: t["weights"])
    return {
        "trials": [(t["weights"], 100 * _value(t, "accuracy")) for t in done],
        "front": [(t["weights"], 100 * _value(t, "accuracy")) for t in front],
        "label": f"{accuracy_label(done)} accuracy (%)",
    }


#: What ``--plot`` writes (the file's suffix says which).
PLOT_FORMATS = (".png", ".pdf", ".svg")


def check_plot_target(target: Path) -> None:
    """Refuse a ``--plot`` target that is no picture file, before anything is read or drawn."""
    from mgspec.errors import Location, SpecError

    if target.is_dir():
        raise SpecError("--plot names a directory", Location(str(target)), hint="name a file in it, e.g. front.png")
    if target.suffix.lower() not in PLOT_FORMATS:
        raise SpecError(
            f"--plot writes {', '.join(PLOT_FORMATS)} files", Location(str(target)), hint="e.g. --plot front.png"
        )


def plot(report: dict, target: Path) -> Path:
    """Accuracy against weights for every completed trial, the Pareto front drawn as a line.

    The accuracy drawn is the one the front is chosen on (validation where a trial held out a
    split, see :func:`pareto`), so the red line joins the points that are not dominated in the
    picture; the axis says which accuracy it is.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picture = drawn(report)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    trials, front = picture["trials"], picture["front"]
    ax.scatter([w for w, _ in trials], [a for _, a in trials], color="0.6", label="trials")
    ax.plot([w for w, _ in front], [a for _, a in front], "o-", color="tab:red", label="Pareto front")
    ax.set_xlabel("weights")
    ax.set_ylabel(picture["label"])
    ax.set_title(f"{report['study']}: accuracy against weights")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: fig.savefig(tmp, format=target.suffix[1:].lower()))
    plt.close(fig)
    return target
