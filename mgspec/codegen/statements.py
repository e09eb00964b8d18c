"""A ``forward`` body as data: statements, the folding of repeated calls into loops, and printing.

The body builder (:mod:`.forward`) emits :class:`Assign` and :class:`Return` statements whose
expressions are source text, except a call of a child block, which is an :class:`Invoke` so
that its callee can be compared: a call of a ``ModuleList`` element is an :class:`Element`
(``self.steps[2]``). :func:`fold_loops` turns a run of such calls that differ only in the
index into a :class:`Loop`, comparing the statements themselves with the index left out;
:func:`print_body` writes the result. Statements are frozen, so a body is hashable and two
blocks' bodies compare as values (what decides whether they share a class).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mgspec.codegen.namespace import Namespace
from mgspec.codegen.pretty import INDENT, LINE


@dataclass(frozen=True)
class Element:
    """``self.<attr>[<index>]``: the block at ``index`` of the ``ModuleList`` ``attr``."""

    attr: str
    index: int


@dataclass(frozen=True)
class Invoke:
    """``callee(arg, ...)``: a child block's call; ``callee`` is source text or a list element."""

    callee: str | Element
    args: tuple[str, ...]


@dataclass(frozen=True)
class Assign:
    """``a, b = value  # comment``."""

    targets: tuple[str, ...]
    value: str | Invoke
    comment: str = ""


@dataclass(frozen=True)
class Return:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Loop:
    """``for var in iterable:`` and its body."""

    var: str
    iterable: str
    body: tuple[Statement, ...]


Statement = Assign | Return | Loop


def _element(statement: Statement, sizes: dict[str, int]) -> Element | None:
    """The list element a statement calls, if the statement may join a loop (an uncommented call)."""
    if isinstance(statement, Assign) and not statement.comment and isinstance(statement.value, Invoke):
        callee = statement.value.callee
        if isinstance(callee, Element) and callee.attr in sizes:
            return callee
    return None


def _calling(statement: Assign, callee: str | Element) -> Assign:
    """``statement`` with its call's callee replaced: the same statement at another index, or a loop body."""
    return replace(statement, value=replace(statement.value, callee=callee))


def _run(statements: list[Statement], i: int, sizes: dict[str, int]) -> int:
    """The end of the run of calls starting at ``i``: consecutive elements of one list, and
    statements that are the same once the index is left out."""
    first = _element(statements[i], sizes)
    template = _calling(statements[i], Element(first.attr, -1))
    j = i + 1
    while j < len(statements):
        other = _element(statements[j], sizes)
        if other is None or other != Element(first.attr, first.index + j - i):
            break
        if _calling(statements[j], Element(first.attr, -1)) != template:
            break
        j += 1
    return j


def fold_loops(statements: list[Statement], sizes: dict[str, int], names: Namespace) -> list[Statement]:
    """Runs of calls ``x = self.steps[i](...)`` that are the same but for ``i`` become a ``for`` loop.

    ``sizes`` are the lengths of the block's lists. A run becomes a loop when it has two calls or
    more, or covers the whole list (so the text does not depend on how many steps an instance
    has). The loop variable is the list's name in the singular (``steps`` -> ``step``; else
    ``step``), made in the body's scope ``names``; later loops may use it again.
    """
    out: list[Statement] = []
    loop_vars: set[str] = set()
    i = 0
    while i < len(statements):
        first = _element(statements[i], sizes)
        j = i + 1 if first is None else _run(statements, i, sizes)
        if first is None or (j - i < 2 and not (first.index == 0 and j - i == sizes[first.attr])):
            out.append(statements[i])
            i += 1
            continue
        attr, start, end, size = first.attr, first.index, first.index + j - i, sizes[first.attr]
        var = names.create(attr[:-1] if attr.endswith("s") and len(attr) > 1 else "step", loop_vars.__contains__)
        loop_vars.add(var)
        span = "" if (start, end) == (0, size) else f"[{start}:]" if end == size else f"[{start}:{end}]"
        out.append(Loop(var, f"self.{attr}{span}", (_calling(statements[i], var),)))
        i = j
    return out


def expression(value: str | Invoke) -> str:
    """The source text of an expression (a child's call is also written inline, as an argument)."""
    if isinstance(value, str):
        return value
    callee = value.callee
    text = f"self.{callee.attr}[{callee.index}]" if isinstance(callee, Element) else callee
    return f"{text}({', '.join(value.args)})"


def print_body(statements: list[Statement] | tuple[Statement, ...], depth: int) -> list[str]:
    """The body's source lines at ``depth`` levels of indentation."""
    pad = INDENT * depth
    out: list[str] = []
    for statement in statements:
        if isinstance(statement, Loop):
            out.append(f"{pad}for {statement.var} in {statement.iterable}:")
            out += print_body(statement.body, depth + 1)
        elif isinstance(statement, Return):
            out.append(f"{pad}return {', '.join(statement.values)}")
        else:
            text = f"{pad}{', '.join(statement.targets)} = {expression(statement.value)}"
            out += with_comment([text], statement.comment)
    return out


def with_comment(block_lines: list[str], comment: str) -> list[str]:
    """Lines with a comment: after the statement if it fits on its one line, else on a line above."""
    if not comment:
        return block_lines
    if len(block_lines) == 1 and len(block_lines[0]) + 2 + len(comment) + 2 <= LINE:
        return [f"{block_lines[0]}  # {comment}"]
    indent = block_lines[0][: len(block_lines[0]) - len(block_lines[0].lstrip())]
    return [f"{indent}# {comment}"] + block_lines
