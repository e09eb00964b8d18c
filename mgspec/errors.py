"""The user-facing error types: SpecError, and RunError for failures of a run.

Every problem a user can cause (bad YAML, unknown fields, wrong types, impossible channel
arithmetic) is raised as a :class:`SpecError` carrying a :class:`Location`: the file, line and
column of the offending value, or the ``--set`` override it came from, and the dotted field
path. The CLI is the only place that prints these and exits; the library only raises.
:class:`RunError` (a subclass, shown the same way) is a failure of a run rather than of its
spec: a tampered run directory, a locked one, divergence, memory exhausted while training.
Plain ``assert`` is reserved for internal invariants that no spec can break.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a value came from: ``source`` is a file path or an ``--set`` override text."""

    source: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.source
        if self.column is None:
            return f"{self.source}:{self.line}"
        return f"{self.source}:{self.line}:{self.column}"


class SpecError(Exception):
    """A user error in a spec, with its location, the field path and an optional hint."""

    def __init__(
        self,
        message: str,
        location: Location | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.field = field
        self.hint = hint

    def __str__(self) -> str:
        parts = []
        if self.location is not None:
            parts.append(str(self.location))
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        text = ": ".join(parts)
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class RunError(SpecError):
    """A failure of a run (its directory, its data, its training), located like a spec error."""
