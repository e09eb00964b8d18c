"""The sweep and study key ``levels``: a spec cut to its first N resolution levels.

``levels`` is not a spec field; it answers "how does the network change with fewer levels" in
``mgspec sweep --grid levels=1,2,3`` and in study grids. The cut spec's text is the YAML of its
data, so a run's config.json reproduces it; its locations stay those of the original file.
"""

from __future__ import annotations

from pathlib import Path

from mgspec.errors import Location, SpecError
from mgspec.load import Source, load_source

#: The key that sets the number of resolution levels.
LEVELS = "levels"

SpecInput = str | Path | Source


def spec_for(spec: SpecInput, values: dict, where: Location | None = None) -> SpecInput:
    """``spec`` itself, or, when ``values`` has :data:`LEVELS`, its first N resolution levels."""
    if LEVELS not in values:
        return spec
    import yaml

    value = values[LEVELS]
    where = where or Location(f"--grid {LEVELS}={value}")
    source = load_source(spec)
    grid = source.data.get("resolution_grid") if isinstance(source.data, dict) else None
    levels = grid.get("levels") if isinstance(grid, dict) else None
    if not isinstance(levels, list):
        raise SpecError("the spec has no resolution_grid.levels to sweep", where)
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):  # text, None, inf
        n = None
    if n is None or isinstance(value, bool) or str(n) != str(value).strip():
        raise SpecError(f"{LEVELS} must be a whole number of levels, not {value!r}", where)
    if not 1 <= n <= len(levels):
        raise SpecError(f"{LEVELS}={n}: the spec has {len(levels)} levels", where, hint=f"use 1 to {len(levels)}")
    source.data["resolution_grid"]["levels"] = levels[:n]
    kept = {path: loc for path, loc in source.locations.items() if not _dropped(path, n)}
    return Source(source.name, yaml.safe_dump(source.data, sort_keys=False), source.data, kept)


def _dropped(path: tuple, n: int) -> bool:
    return len(path) > 2 and path[:2] == ("resolution_grid", "levels") and isinstance(path[2], int) and path[2] >= n
