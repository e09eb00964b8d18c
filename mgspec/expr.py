"""Constructor expressions as data: what both backends read to build a weight slot's module.

A :class:`Call` is ``func(arg, ..., key=value)`` with :class:`Num` numbers in it. The source
backend prints it (each number as a constructor parameter of the enclosing class where one
equals it, :mod:`mgspec.codegen.classes`); the runtime backend evaluates the same description
(:func:`mgspec.build.construct`), so the module the runtime builds is the one the generated
file writes. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Num:
    """A number in a constructor, rendered as one of the enclosing class's parameters if one
    equals it (preferring the names in ``prefer``), else as a literal."""

    value: int
    prefer: tuple[str, ...] = ()
    channels: bool = True  # may be written as a channel parameter (or half of one)


@dataclass(frozen=True)
class Call:
    """``func(arg, ..., key=value, ...)``: ``args`` are (keyword or None, value) pairs."""

    func: str
    args: tuple[tuple[str | None, Expr], ...] = ()


@dataclass(frozen=True)
class Seq:
    """A list literal ``[a, b]`` or, with ``keys``, a dict literal ``{"k": a, ...}``."""

    items: tuple[Expr, ...]
    keys: tuple[str, ...] | None = None


Expr = Call | Seq | Num | int | bool | str  # a str is source text, used as it is
