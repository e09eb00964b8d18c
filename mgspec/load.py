"""Stage 1: YAML text -> plain data with a location for every value.

Input: a spec file (or text) and optional ``--set PATH=VALUE`` overrides.
Output: :class:`Source` -- the plain data (dicts, lists, scalars), a map from every data path
to its :class:`~mgspec.errors.Location`, and the sha256 of the spec text.

Invariants: YAML is composed with ``yaml.SafeLoader`` only (no object construction, so no
code can run); duplicate keys, non-string keys and tags other than the core schema's are
:class:`~mgspec.errors.SpecError`\\ s naming file and line. Overrides are parsed as YAML
scalars (or flat flow lists such as ``[A, B]``) and re-checked by the schema exactly like file values.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mgspec.errors import Location, SpecError

DataPath = tuple[str | int, ...]

_CORE_TAGS = {"tag:yaml.org,2002:" + name for name in ("map", "seq", "str", "int", "float", "bool", "null")}


@dataclass
class Source:
    """A spec's raw data with locations; ``name`` is the file path shown in errors."""

    name: str
    text: str
    data: dict[str, Any]
    locations: dict[DataPath, Location] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def locate(self, path: DataPath) -> Location:
        """The location of ``path``, or of its nearest located ancestor."""
        for end in range(len(path), -1, -1):
            loc = self.locations.get(tuple(path[:end]))
            if loc is not None:
                return loc
        return Location(self.name)


def format_path(path: DataPath) -> str:
    """``('resolution_grid', 'levels', 1, 'channels')`` -> ``resolution_grid.levels[1].channels``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _mark(name: str, node: yaml.Node) -> Location:
    return Location(name, node.start_mark.line + 1, node.start_mark.column + 1)


def _to_data(node: yaml.Node, name: str, path: DataPath, locs: dict, loader: yaml.SafeLoader):
    if node.tag not in _CORE_TAGS:
        raise SpecError(
            f"YAML tag {node.tag!r} is not allowed",
            _mark(name, node),
            format_path(path) or None,
            hint="specs hold plain mappings, lists, strings and numbers only",
        )
    locs[path] = _mark(name, node)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError("YAML merge keys ('<<') are not supported", _mark(name, key_node))
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                raise SpecError(f"mapping keys must be strings, got {key!r}", _mark(name, key_node))
            if key in out:
                first = locs[path + (key,)]
                raise SpecError(
                    f"duplicate key {key!r} (first defined at line {first.line})",
                    _mark(name, key_node),
                    format_path(path + (key,)),
                )
            out[key] = _to_data(value_node, name, path + (key,), locs, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(v, name, path + (i,), locs, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node)


def parse_text(text: str, name: str = "<spec>") -> Source:
    """Parse spec text; ``name`` is used in every error location."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            loc = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
            raise SpecError(f"invalid YAML: {exc.problem or exc.context}", loc) from None
        except yaml.YAMLError as exc:  # e.g. a reader error on control characters
            raise SpecError(f"invalid YAML: {exc}", Location(name)) from None
        if root is None:
            raise SpecError("the spec is empty", Location(name, 1))
        locs: dict[DataPath, Location] = {}
        data = _to_data(root, name, (), locs, loader)
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError("a spec must be a YAML mapping at the top level", Location(name, 1, 1))
    return Source(name, text, data, locs)


def read_spec_file(path: str | Path) -> Source:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such spec file", Location(str(path))) from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
        raise SpecError(f"cannot read spec: {exc.__class__.__name__}", Location(str(path))) from None
    return parse_text(text, str(path))


_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\d+)")


def parse_override_path(text: str, where: Location) -> DataPath:
    """``a.b[2].c`` or ``a.b.2.c`` -> ``('a', 'b', 2, 'c')``."""
    parts: list[str | int] = []
    for chunk in text.split("."):
        pos = 0
        if not chunk:
            raise SpecError(f"empty component in path {text!r}", where)
        while pos < len(chunk):
            m = _PART.match(chunk, pos)
            if not m or (m.group(3) is not None and pos > 0):
                raise SpecError(
                    f"malformed path {text!r}",
                    where,
                    hint="use dotted names, e.g. channel_grid.group_size or resolution_grid.levels[0].channels",
                )
            name, index, bare = m.groups()
            parts.append(name if name is not None else int(index if index is not None else bare))
            pos = m.end()
    return tuple(parts)


def apply_override(source: Source, assignment: str) -> None:
    """Apply one ``PATH=VALUE`` override in place; VALUE is a YAML scalar."""
    where = Location(f"--set {assignment}")
    path_text, sep, value_text = assignment.partition("=")
    if not sep or not path_text.strip():
        raise SpecError("an override must look like PATH=VALUE", where, hint="e.g. --set width=2")
    path = parse_override_path(path_text.strip(), where)
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError:
        raise SpecError(f"cannot parse value {value_text!r}", where) from None
    if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value)):
        raise SpecError("override values must be scalars or flat lists like [A, B]", where, format_path(path))
    node: Any = source.data
    for depth, part in enumerate(path[:-1]):
        here = path[: depth + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or not 0 <= part < len(node):
                raise SpecError(f"unknown path {format_path(path)!r}: no list item {format_path(here)}", where)
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise SpecError(f"unknown path {format_path(path)!r}: {format_path(here[:-1])} is not a mapping", where)
            if node.get(part) is None:
                # An absent section is created; the schema rejects it if the name is unknown.
                node[part] = {}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or not 0 <= last < len(node):
            raise SpecError(f"unknown path {format_path(path)!r}: no such list item", where)
    elif not isinstance(node, dict):
        raise SpecError(f"unknown path {format_path(path)!r}: {format_path(path[:-1])} is not a mapping", where)
    node[last] = value
    # The value and every section the override created now come from the command line.
    for end in range(1, len(path) + 1):
        if path[:end] not in source.locations or end == len(path):
            source.locations[path[:end]] = where
    for stale in [p for p in source.locations if len(p) > len(path) and p[: len(path)] == path]:
        del source.locations[stale]
    source.text += f"\n# --set {assignment}"


def load_source(spec: str | Path | Source, overrides: list[str] | tuple[str, ...] | None = None) -> Source:
    """Read a spec file (or take a parsed :class:`Source`) and apply overrides."""
    if isinstance(spec, Source):
        source = Source(spec.name, spec.text, _deepcopy(spec.data), dict(spec.locations))
    else:
        source = read_spec_file(spec)
    for assignment in overrides or ():
        apply_override(source, assignment)
    return source


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data
