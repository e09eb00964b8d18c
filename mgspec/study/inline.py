"""Studies built in memory (``mgspec sweep --train``, ``mgspec reproduce``) rather than read from a file.

:func:`build` validates a study mapping with the study model (errors are located at ``origin``,
e.g. ``--grid``), and :func:`write` stores it as ``<out>/study.yaml`` so the workers of
``mgspec study run`` (which reload the study from its file) can train it unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from mgspec.errors import Location, SpecError
from mgspec.load import Source
from mgspec.study.model import Study, validate


def build(data: dict, origin: str, origins: dict[str, str] | None = None) -> Study:
    """The :class:`Study` of ``data`` (its ``spec`` an absolute path).

    Errors name ``origin``, or ``origins[key]`` for a problem under a top-level ``key`` (the
    option it came from, e.g. ``{"seeds": "--seeds"}``).
    """
    spec = Path(str(data.get("spec", "")))
    if not spec.is_absolute():
        raise SpecError("an in-memory study names its spec by absolute path", Location(origin))
    located = {(key,): Location(option) for key, option in (origins or {}).items()}
    source = Source(origin, yaml.safe_dump(data, sort_keys=False), data, located)
    study = validate(source, spec.parent / "study.yaml")
    if not study.spec_path.is_file():
        raise SpecError(f"no such spec file: {study.spec_path}", Location(origin), "spec")
    return study


def write(study: Study, out: Path) -> Path:
    """Write ``study`` as ``<out>/study.yaml`` (atomically) and return that path."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "study.yaml"
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(study.model.model_dump(mode="json", exclude_none=True), sort_keys=False))
    os.replace(tmp, target)
    return target


def from_row(row, seeds: int = 1, train: dict | None = None, seed: int = 0) -> dict:
    """A paper row as a one-point study mapping: each ``--set`` override a grid axis of one value.

    It trains with the paper's protocol (no validation split) unless ``train`` says otherwise.
    """
    grid = {}
    for override in row.overrides:
        path, _, value = override.partition("=")
        grid[path] = [value]
    name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in row.id.replace("/", "-"))[:64]
    return {
        "name": name,
        "spec": str(row.spec_path.resolve()),
        "dataset": row.dataset,
        "train": {k: v for k, v in {"val_split": 0, **dict(row.recipe), **(train or {})}.items() if v is not None},
        "seeds": seeds,
        "seed": seed,
        "grid": grid,
    }
