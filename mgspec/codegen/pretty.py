"""Constructor expressions and the line breaking of generated source.

Generated text is emitted already formatted -- no formatter runs at compile time, so the
output is byte-identical whatever tools are installed. The layout follows the formatter
convention the project lints with (black's, as ruff implements it): a call that does not
fit on its line opens after ``(``; its arguments go on one indented line if they fit there,
else one per line with a trailing comma; a lone argument is broken recursively.
"""

from __future__ import annotations

import json

from mgspec.expr import Call, Expr, Num, Seq

__all__ = ["INDENT", "LINE", "Call", "Expr", "Num", "Seq", "flat", "lines", "literal", "signature"]

LINE = 120
INDENT = "    "


def flat(e: Expr) -> str:
    if isinstance(e, Call):
        return f"{e.func}({', '.join(_arg(k, v) for k, v in e.args)})"
    if isinstance(e, Seq):
        return "{" + ", ".join(_items(e)) + "}" if e.keys is not None else "[" + ", ".join(_items(e)) + "]"
    return str(e)


def _arg(key: str | None, value: Expr) -> str:
    return f"{key}={flat(value)}" if key else flat(value)


def _items(e: Seq) -> list[str]:
    return [f"{key}{flat(v)}" for key, v in _elements(e)]


def literal(text: str) -> str:
    """A string literal in the formatter's double quotes (JSON's escapes are Python's too)."""
    return json.dumps(text)


def _elements(e: Seq) -> list[tuple[str, Expr]]:
    keys = [""] * len(e.items) if e.keys is None else [f"{literal(k)}: " for k in e.keys]
    return list(zip(keys, e.items, strict=True))


def _parts(e: Expr) -> tuple[str, list[tuple[str, Expr]], str]:
    """Opening text, (prefix, element) pairs and closing text of a bracketed expression."""
    if isinstance(e, Call):
        return f"{e.func}(", [(f"{k}=" if k else "", v) for k, v in e.args], ")"
    return ("[", _elements(e), "]") if e.keys is None else ("{", _elements(e), "}")


def lines(e: Expr, depth: int, head: str = "", tail: str = "") -> list[str]:
    """``head + e + tail`` as indented lines at ``depth`` levels, broken to fit ``LINE``."""
    pad = INDENT * depth
    text = pad + head + flat(e) + tail
    if len(text) <= LINE or not isinstance(e, Call | Seq) or not (e.args if isinstance(e, Call) else e.items):
        return [text]
    opening, elements, closing = _parts(e)
    inner = INDENT * (depth + 1)
    body = ", ".join(prefix + flat(v) for prefix, v in elements)
    out = [pad + head + opening]
    if len(elements) == 1 and not elements[0][0]:
        out += lines(elements[0][1], depth + 1)
    elif len(inner + body) <= LINE:
        out.append(inner + body)
    else:
        for prefix, v in elements:
            out += lines(v, depth + 1, prefix, ",")
    out.append(pad + closing + tail)
    return out


def signature(depth: int, name: str, params: list[str], returns: str) -> list[str]:
    """A ``def`` line, exploded one parameter per line when too long (as the formatter does)."""
    pad = INDENT * depth
    text = f"{pad}def {name}({', '.join(params)}) -> {returns}:"
    if len(text) <= LINE:
        return [text]
    return [f"{pad}def {name}("] + [f"{pad}{INDENT}{p}," for p in params] + [f"{pad}) -> {returns}:"]
