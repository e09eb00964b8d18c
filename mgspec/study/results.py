"""The paper rows a study measured: ``mgspec paper --results DIR`` fills their accuracy column.

A row matches a study point when the study trains the row's spec (the same text) on the row's
dataset and the point's spec settings are exactly the row's ``--set`` overrides (``mgspec
reproduce`` writes such one-point studies). Its accuracy is the point's mean and standard
deviation of test accuracy over its seeds, with the recipe options it trained otherwise than the
paper (a shortened run is marked as such, never passed off as the paper's number).
"""

from __future__ import annotations

from pathlib import Path

from mgspec.errors import Location, SpecError


def load(directory: Path) -> tuple[dict, dict, dict]:
    """The study definition, report and recorded defaults in ``directory`` (a located error when it
    holds no study)."""
    from mgspec.study import report, require
    from mgspec.study import storage as stores

    require("optuna")
    if not (Path(directory) / "journal.log").is_file():
        raise SpecError(
            "not a study directory (no journal.log)",
            Location(str(directory)),
            hint="give the --out of mgspec study run, sweep --train or reproduce",
        )
    name, objectives, handle = report.load(None, stores.open_storage(None, Path(directory), parallel=False))
    definition = handle.user_attrs.get(stores.DEFINITION) or {}
    defaults = {"val_split": stores.default_val_split(handle)}
    return definition, report.build(name, objectives, handle, Path(directory)), defaults


def accuracies(rows, directory: Path) -> dict[str, dict]:
    """``{row id: {"mean", "std", "seeds"}}`` (percent) for the rows a point of the study measured."""
    from mgspec.study.points import overrides

    definition, result, defaults = load(directory)
    out = {}
    for row in rows:
        if row.dataset != definition.get("dataset") or row.spec_path.read_text() != definition.get("spec_text"):
            continue
        for point in result["points"]:
            if sorted(overrides(point["params"])) == sorted(row.overrides):
                out[row.id] = {
                    "mean": 100 * point["acc_mean"],
                    "std": None if point["acc_std"] is None else 100 * point["acc_std"],
                    "seeds": len(point["seeds"]),
                    "recipe": recipe_differences(row, trained(definition, point["params"], defaults)),
                }
    return out


def trained(definition: dict, params: dict, defaults: dict) -> dict:
    """The recipe options a point trained with: the study's defaults (its validation split), its
    ``train:``, then the point's ``train.<option>`` parameters."""
    from mgspec.study.points import TRAIN

    point = {path[len(TRAIN) :]: value for path, value in params.items() if path.startswith(TRAIN)}
    return {**defaults, **(definition.get("train") or {}), **point}


#: The recipe options that decide what a training computes (not how fast it runs).
RECIPE = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "step_size", "gamma",
          "max_batches", "val_split")  # fmt: skip


def recipe_differences(row, train: dict) -> dict[str, list]:
    """``{option: [ours, the paper's]}`` where the study trained otherwise than the paper (a
    shortened smoke test, say): such an accuracy is not the paper's number measured again."""
    from mgspec.train.recipe import recipe

    paper = recipe(row.dataset, "data", **{"val_split": 0.0, **dict(row.recipe)}, device="cpu", threads=1)
    return {k: [train[k], getattr(paper, k)] for k in RECIPE if k in train and train[k] != getattr(paper, k)}
