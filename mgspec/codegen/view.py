"""The header of a generated file: every string the skeleton lays out around the classes.

Input: a verified graph and its compiled classes. Output: a dict for ``model.py.j2``. Spec
strings reach the source only inside the module docstring or a comment, made safe for both:
no character that ends them (a newline in a comment, ``\"\"\"`` or a backslash in the
docstring) and no character a source file cannot hold (control characters, lone surrogates).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

import networkx as nx

from mgspec import __version__
from mgspec.codegen.classes import Module
from mgspec.codegen.helpers import helper_sources
from mgspec.count import count
from mgspec.registry import builtin_name


def display_path(source: str) -> str:
    """The spec path as the header shows it: a built-in model's name, else the path relative to the
    working directory (as given, through symbolic links), else the file's name."""
    path = Path(source)
    shown = builtin_name(path)
    for absolute in (Path(os.path.abspath(path)), path.resolve()):
        if shown is not None:
            break
        with contextlib.suppress(ValueError, OSError):
            shown = absolute.relative_to(Path.cwd().resolve()).as_posix()
    shown = shown or path.name
    return shown if shown.isprintable() and shown.isascii() else json.dumps(shown)


def shell_word(text: str) -> str:
    """``text`` as one word of a shell command that fits on one line of a comment.

    Printable text is quoted as :func:`shlex.quote` does; text with a newline or another
    non-printable character is written with bash's ``$'...'`` escapes (a character's UTF-8
    bytes, whatever the locale), so the command in the header still runs and the comment never
    ends early.
    """
    if text.isprintable():
        return shlex.quote(text)
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}
    out = []
    for c in text:
        if c in named:
            out.append(named[c])
        elif c.isprintable():
            out.append(c)
        else:  # its UTF-8 bytes: bash's \u escapes depend on the locale, \x escapes do not
            out.extend(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogateescape"))
    return "$'" + "".join(out) + "'"


def set_options(overrides: Sequence[str]) -> str:
    """The ``--set`` options of a command line, each a :func:`shell_word` (empty without overrides)."""
    return "".join(f" --set {shell_word(o)}" for o in overrides)


def docstring_text(text: str) -> str:
    """``text`` made safe inside a triple-quoted docstring."""
    text = text.replace('"""', "'''").replace("\\", "/")
    return "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in text)


def view_model(graph: nx.DiGraph, module: Module, regenerate: str | None = None, overrides: Sequence[str] = ()) -> dict:
    spec = graph.graph["spec"]
    counts = count(graph)
    source = display_path(graph.graph["source"])
    rows = [f"{'level':<10}{'weights':>14}{'MACs':>16}"]
    for level, weights in counts.by_level.items():
        rows.append(f"{level:<10}{weights:>14,}{counts.macs_by_level.get(level, 0):>16,}")
    rows.append(f"{'total':<10}{counts.total:>14,}{counts.macs:>16,}")
    unused = (
        f"{counts.unused:,} of them in never-applied slots: {', '.join(counts.unused_slots)}"
        if counts.unused
        else "every weight is used"
    )
    literal = counts.passes[0]["macs_before"] if counts.passes else counts.macs
    removed = (
        f"\nThe literal algorithm takes {literal:,}: mgspec's passes removed zero work and repeated convolutions."
        if literal != counts.macs
        else ""
    )
    sets = set_options(overrides)
    classes = helper_sources(graph) + [c.text for c in module.classes]
    text = "\n".join(classes)
    return {
        "version": __version__,
        "source_name": source,
        "sha256": graph.graph["sha256"],
        "regenerate": regenerate or f"mgspec compile {shell_word(source)}{sets} -o <dir>",
        "overrides": sets.strip(),
        "title": f"{spec.name}: the {spec.family} network compiled by mgspec.",
        "description": docstring_text(spec.description or "(no description)"),
        "total": f"{counts.total:,}",
        "unused_note": unused,
        "size": "x".join(map(str, spec.input.shape)),
        "macs": f"{counts.macs:,}.{removed}",
        "count_rows": rows,
        "functional": "F." in text,
        "classes": "\n\n".join(classes),
        "class_name": module.model,
    }
