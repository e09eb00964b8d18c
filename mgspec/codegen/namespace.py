"""The one naming service of generated code: every identifier the generated file uses.

No spec string reaches generated source unchecked. Every name -- class names, ``self``
attributes, constructor parameters, ``forward`` arguments, variables and loop variables --
is made or checked by a :class:`Namespace`, one per scope (the module, a class's
``__init__``, a ``forward``). A made name is an ASCII identifier, not a keyword, not a
builtin, not a name the generated module itself defines (:data:`MODULE_NAMES`), and not
taken in its scope; a name that must be exactly what it is (an attribute, which is a
``state_dict`` key) is checked and claimed, never changed. String literals go through
``repr`` or :func:`mgspec.codegen.pretty.literal`, never through here.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Callable, Iterable

#: Names every generated module defines or imports.
MODULE_NAMES = frozenset({"torch", "F", "nn", "create_model"})
_PYTHON = frozenset(keyword.kwlist) | frozenset(dir(builtins))
_KINDS = {"mgiad": "MGiaD", "mgnet": "MgNet", "mgic": "MGIC", "resnet": "ResNet"}


def identifier(text: str) -> str:
    """``text`` as an ASCII identifier: other characters become ``_``, edge ``_`` go, a digit
    first gets a ``_`` before it (``f - A(u)`` -> ``f___A_u``)."""
    name = re.sub(r"\W", "_", text, flags=re.ASCII).strip("_") or "v"
    return "_" + name if name[0].isdigit() else name


def legal(name: str) -> bool:
    """Whether ``name`` can be written as it is: an ASCII identifier that is not a keyword."""
    return name.isascii() and name.isidentifier() and not keyword.iskeyword(name)


class Namespace:
    """One scope of generated names.

    ``create`` makes a fresh name as close to a candidate as it can (``u``, then ``u_2``, ...);
    ``claim`` takes a name exactly or fails. A name taken by ``create`` may be given again
    when the caller's ``reusable`` says its old holder is done with it (a variable whose value
    is dead); reserved names, keywords and builtins never are.
    """

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._reserved = set(reserved)
        self._made: set[str] = set()

    def taken(self, name: str) -> bool:
        return name in self._reserved or name in self._made or name in _PYTHON

    def reserve(self, name: str) -> None:
        """Keep ``name`` out of every later ``create`` in this scope."""
        self._reserved.add(name)

    def claim(self, name: str) -> str:
        """``name`` itself, which must be legal and not yet claimed or reserved here: for names the
        generated code cannot rename (attributes, which are ``state_dict`` keys; constructor
        parameters, which callers pass by keyword). A builtin is fine: it is never shadowed where
        these names live (on ``self``, in ``__init__``)."""
        if not legal(name) or name in self._reserved or name in self._made:
            raise ValueError(f"{name!r} cannot be a name in generated code: it is not an identifier or is taken")
        self._made.add(name)
        return name

    def create(self, candidate: str, reusable: Callable[[str], bool] | None = None) -> str:
        """A name for ``candidate``: itself if free, else the first free ``candidate_<n>``, n >= 2."""
        base = identifier(candidate)
        n = 1
        while True:
            name = base if n == 1 else f"{base}_{n}"
            if not self.taken(name):
                self._made.add(name)
                return name
            if reusable is not None and name in self._made and name not in self._reserved and reusable(name):
                return name
            n += 1

    def copy(self) -> Namespace:
        """The scope as it stands, to go on in without changing this one."""
        other = Namespace(self._reserved)
        other._made = set(self._made)
        return other


def module_namespace(defined: Iterable[str]) -> Namespace:
    """The module scope: class names avoid what the file imports and the helper classes it defines."""
    return Namespace(MODULE_NAMES | set(defined))


def function_namespace() -> Namespace:
    """A ``forward``'s scope: its arguments and variables avoid ``self`` and the module's names."""
    return Namespace(MODULE_NAMES | {"self"})


def camel_case(name: str) -> str:
    """``mgiad_cifar10`` -> ``MgiadCifar10``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"_+", name) if part) or "Model"


def class_name(kind: str) -> str:
    """The class name of a block kind, the families spelled as their papers do (``mgiad_cycle`` ->
    ``MGiaDCycle``)."""
    return "".join(_KINDS.get(part, part[:1].upper() + part[1:]) for part in kind.split("_"))
