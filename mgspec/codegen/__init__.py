"""Backend 2: the graph IR -> readable, standalone PyTorch source.

``render(graph)`` fills ``templates/model.py.j2`` from the view-model (:mod:`.view`), formats
the text with ruff, lints it, and checks it with ``compile()``; the result depends only on
the spec (no timestamps), so it is byte-identical from run to run. ``write`` replaces a file
atomically and only when its content changes.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import jinja2
import networkx as nx
from ruff.__main__ import find_ruff_bin

from mgspec.codegen.view import view_model

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("mgspec.codegen", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


class CodegenError(RuntimeError):
    """The generator produced invalid source: a bug in mgspec, never a user error."""


def _ruff(args: list[str], text: str) -> str:
    proc = subprocess.run([find_ruff_bin(), *args], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CodegenError(f"ruff {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


_RUFF = ["--isolated", "--line-length", "120", "--target-version", "py311"]


def render(graph: nx.DiGraph, regenerate: str | None = None) -> str:
    """The generated module's source text."""
    spec = graph.graph["spec"]
    text = _ENV.get_template("model.py.j2").render(**view_model(graph, regenerate))
    text = _ruff(["format", *_RUFF, "--stdin-filename", f"{spec.name}.py", "-"], text)
    _ruff(
        ["check", *_RUFF, "--select", "E,F,W,I,B,UP", "--ignore", "E501", "--stdin-filename", f"{spec.name}.py", "-"],
        text,
    )
    try:
        compile(text, f"{spec.name}.py", "exec")
    except SyntaxError as exc:
        raise CodegenError(f"generated source does not compile: {exc}") from exc
    return text


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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
