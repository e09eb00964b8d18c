"""Backend 2: the graph IR -> readable, standalone PyTorch source.

``render(graph)`` compiles the block tree and its nodes into classes (:mod:`.classes`), fills
the file skeleton ``templates/model.py.j2`` (header, imports, classes, ``create_model``) with
them and the header strings of :mod:`.view`, and checks the text with ``compile()``. No
formatter runs: the text is emitted formatted (:mod:`.pretty`), so it is byte-identical from
run to run and from machine to machine, whatever tools are installed; the test suite lints
``generated/`` with ruff. ``write`` replaces a file atomically and only when its content
changes.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jinja2
import networkx as nx

from mgspec.codegen.classes import compile_classes
from mgspec.codegen.view import view_model

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("mgspec.codegen", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


class CodegenError(RuntimeError):
    """The generator produced invalid source: a bug in mgspec, never a user error."""


def render(graph: nx.DiGraph, regenerate: str | None = None, overrides: Sequence[str] = ()) -> str:
    """The generated module's source text; ``overrides`` (the ``--set`` options applied) are named in its header."""
    module = compile_classes(graph)
    text = _ENV.get_template("model.py.j2").render(**view_model(graph, module, regenerate, overrides))
    try:
        compile(text, f"{graph.graph['spec'].name}.py", "exec")
    except SyntaxError as exc:
        raise CodegenError(f"generated source does not compile: {exc}") from exc
    return text


def file_name(spec_name: str, overrides: Sequence[str] = ()) -> str:
    """``<name>.py``, or with overrides ``<name>_<field>_<value>...py`` (``width=2`` -> ``mgiad_cifar10_width_2.py``).

    A spec compiled with ``--set`` is another network: it never takes the plain spec's file name.
    Each override adds its field's last component and its value, reduced to letters, digits and
    ``_`` (``resolution_grid.share=[A,B]`` -> ``share_A_B``).
    """
    parts = [spec_name]
    for override in overrides:
        path, _, value = override.partition("=")
        parts.append(re.sub(r"[^A-Za-z0-9]+", "_", f"{path.strip().rsplit('.', 1)[-1]}_{value.strip()}").strip("_"))
    return "_".join(p for p in parts if p) + ".py"


def is_current(path: Path, text: str) -> bool:
    return path.exists() and path.read_text(encoding="utf-8") == text


def write(path: Path, text: str) -> bool:
    """Atomically replace ``path`` with ``text`` if it differs; True when it was written."""
    if is_current(path, text):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        umask = os.umask(0)  # mkstemp makes the file private; a generated file follows the user's umask
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
