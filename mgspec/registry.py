"""Built-in models by name: the specs that ship inside the package (``mgspec/specs/``).

The paper's specs live in ``mgspec/specs/*.yaml`` and the design-space examples in
``mgspec/specs/examples/*.yaml``; each is known by its file name without ``.yaml``
(``mgiad_cifar10``, ``mgnet_rectangular``). :func:`resolve` is the one place a spec argument
becomes a file: a path that exists always wins; otherwise a bare name (no directory, no
``.yaml``/``.yml``) is looked up here, and an unknown name is a located
:class:`~mgspec.errors.SpecError` that suggests the closest names.
"""

from __future__ import annotations

import difflib
import fnmatch
from functools import cache
from pathlib import Path

from mgspec.errors import Location, SpecError

#: The folder of built-in specs inside the installed package.
SPECS = Path(__file__).resolve().parent / "specs"
#: The design-space examples, also built in.
EXAMPLES = SPECS / "examples"


@cache
def _index() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in (SPECS, EXAMPLES):
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the built-in specs, sorted; ``pattern`` filters them like a shell glob (``"*mgiad*"``)."""
    names = sorted(_index())
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def is_example(name: str) -> bool:
    """Whether a built-in name is one of the design-space examples (not one of the paper's specs)."""
    return _index()[name].parent == EXAMPLES


def spec_path(name: str) -> Path:
    """The file of the built-in spec ``name``; an unknown name is a SpecError suggesting close ones."""
    path = _index().get(name)
    if path is None:
        close = difflib.get_close_matches(name, list(_index()), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise SpecError(
            "no such spec file or built-in model",
            Location(name),
            hint=hint + "`mgspec list` shows the built-in models",
        )
    return path


def builtin_name(path: str | Path) -> str | None:
    """The model name of a built-in spec's file exactly as :func:`resolve` returns it, else None."""
    path = Path(path)
    return path.stem if _index().get(path.stem) == path else None


def looks_like_name(text: str) -> bool:
    """A bare model name: no directory part and no YAML suffix (``-`` is stdin, not a name)."""
    return bool(text) and text != "-" and "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml"))


def resolve(spec):
    """A spec argument with built-in names replaced by their files; anything else is returned as is.

    A string or path that names an existing file (or that does not look like a bare name, or holds
    YAML text) is left alone, so paths keep their own errors.
    """
    if not isinstance(spec, str | Path) or (isinstance(spec, str) and "\n" in spec):
        return spec
    text = str(spec)
    if not looks_like_name(text) or Path(text).is_file():
        return spec
    return spec_path(text)
