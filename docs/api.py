"""Generate docs/api.md, the Python API reference, from the docstrings of the public names.

    python docs/api.py           # rewrite docs/api.md
    python docs/api.py --check   # exit 1 if docs/api.md is stale (the test suite runs this)

The public names are ``mgspec.__all__`` and ``mgspec.train.__all__``; each gets its signature
(from :func:`inspect.signature`) and its docstring (from :func:`inspect.getdoc`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path

import mgspec
import mgspec.train

TARGET = Path(__file__).with_name("api.md")

HEADER = """\
# Python API

Generated from the docstrings by `python docs/api.py` (a test keeps this page fresh).

```python
import mgspec

model = mgspec.create_model("specs/mgiad_cifar10.yaml", {"width": 2})   # or overrides=["width=2"]
counts = mgspec.count_spec("specs/mgiad_cifar10.yaml")
source = mgspec.generate_source("specs/mgiad_cifar10.yaml")            # standalone PyTorch source
```

A spec can be given as a file path, YAML text (a string with a line break), a mapping of the
spec's data, a parsed `Source` or a validated `Spec`. Overrides are a list of `--set`-style
`"PATH=VALUE"` strings or a mapping `{"PATH": value}`; a single string is refused with a hint.
Mistakes in a spec raise `SpecError`, whose message names the file, line and field.
"""


def _annotation(annotation) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _repr(value) -> str:
    """``repr`` without memory addresses: ``<function f at 0x...>`` becomes ``f``, so the page is stable."""
    return re.sub(r"<(?:function|class|built-in function) ([\w.]+)(?: at 0x[0-9a-f]+)?>", r"\1", repr(value))


def signature(obj) -> str:
    """``name(a: T = default, *, b: U) -> R`` with annotations as written in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    parts, star_done = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        text = prefix + p.name
        if ann := _annotation(p.annotation):
            text += f": {ann}"
        if p.default is not inspect.Parameter.empty:
            default = _repr(p.default)
            text += f" = {default}" if ann else f"={default}"
        parts.append(text)
    ret = _annotation(sig.return_annotation)
    return f"({', '.join(parts)})" + (f" -> {ret}" if ret else "")


def _entry(module: str, name: str, obj) -> list[str]:
    lines = [f"### `{module}.{name}`", ""]
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            lines += ["```python", f"class {name}{signature(obj)}", "```", ""]
        else:
            lines += ["```python", f"class {name}", "```", ""]
    elif callable(obj):
        lines += ["```python", f"def {name}{signature(obj)}", "```", ""]
    else:
        lines += [f"`{obj!r}`", ""]
    doc = inspect.getdoc(obj) if (callable(obj) or inspect.isclass(obj)) else None
    if doc and not doc.startswith(f"{name}("):  # not the signature dataclasses put in as a docstring
        lines += [doc, ""]
    return lines


def render() -> str:
    lines = [HEADER]
    for module in (mgspec, mgspec.train):
        lines += [f"## `{module.__name__}`", "", inspect.getdoc(module).split("\n\n")[0], ""]
        for name in sorted(module.__all__, key=str.lower):
            lines += _entry(module.__name__, name, getattr(module, name))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python docs/api.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
