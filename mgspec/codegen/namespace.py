"""Legal, unique Python identifiers for generated code.

No spec string reaches generated source unchecked: names pass through :class:`Namespace`,
which maps them to ASCII identifiers that are not keywords, not builtins, not names the
generated module itself defines, and not used before. String literals go through ``repr``.
"""

from __future__ import annotations

import builtins
import keyword
import re


class Namespace:
    def __init__(self, reserved: set[str] | frozenset[str] = frozenset()) -> None:
        self._taken = set(reserved) | set(dir(builtins)) | set(keyword.kwlist)

    def reserve(self, name: str) -> None:
        self._taken.add(name)

    def create(self, candidate: str) -> str:
        """A fresh identifier as close to ``candidate`` as possible (``name``, then ``name_2``, ...)."""
        name = re.sub(r"[^0-9A-Za-z_]", "_", candidate) or "_"
        if name[0].isdigit():
            name = "_" + name
        base, n = name, 1
        while name in self._taken or keyword.iskeyword(name):
            n += 1
            name = f"{base}_{n}"
        self._taken.add(name)
        return name


def camel_case(name: str) -> str:
    """``mgiad_cifar10`` -> ``MgiadCifar10``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", name) if part) or "Model"
