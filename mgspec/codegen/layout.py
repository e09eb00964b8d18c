"""A compiled class as source text: docstring, ``__init__`` and ``forward``, emitted formatted.

Input: the class's name, docstring, constructor parameters, the modules ``__init__`` builds
(attribute, constructor expression, comment) and the ``forward`` body as statements. The
layout is the formatter's (see :mod:`.pretty`), so the text needs no formatter run.
"""

from __future__ import annotations

import textwrap

from mgspec.codegen.pretty import INDENT, LINE, Expr, lines, signature
from mgspec.codegen.statements import Statement, print_body, with_comment


def class_text(
    name: str,
    doc: str,
    init: list[str],
    members: list[tuple[str, Expr, str]],
    forward: tuple[list[str], str, tuple[Statement, ...]],
) -> str:
    """The class definition; ``forward`` is (parameters after ``self``, return annotation, body)."""
    params, returns, body = forward
    out = [f"class {name}(nn.Module):"]
    out += docstring(doc, 1)
    out.append("")
    out += signature(1, "__init__", ["self"] + init, "None")
    out.append(f"{INDENT * 2}super().__init__()")
    for attr, value, comment in members:
        out += with_comment(lines(value, 2, f"self.{attr} = "), comment)
    out.append("")
    out += signature(1, "forward", ["self"] + params, returns)
    out += print_body(body, 2)
    return "\n".join(out) + "\n"


def docstring(text: str, depth: int) -> list[str]:
    """``text`` as a docstring at ``depth``: paragraphs wrapped, nothing in it able to end it."""
    pad = INDENT * depth
    paragraphs = text.replace("\\", "/").replace('"""', "'''").split("\n\n")
    wrapped = [_wrap(paragraph, LINE - len(pad)) for paragraph in paragraphs]
    body = "\n\n".join(wrapped).split("\n")
    if len(body) == 1 and len(pad) + 6 + len(body[0]) <= LINE:
        return [f'{pad}"""{body[0]}"""']
    return [f'{pad}"""{body[0]}'] + [f"{pad}{line}" if line else "" for line in body[1:]] + [f'{pad}"""']


def _wrap(paragraph: str, width: int) -> str:
    return "\n".join(textwrap.wrap(paragraph, width=min(width, 92), break_long_words=False, break_on_hyphens=False))
