"""Stage 1: YAML text -> plain data with a location for every value.

Input: a spec file (or text) and optional ``--set PATH=VALUE`` overrides.
Output: :class:`Source` -- the plain data (dicts, lists, scalars), a map from every data path
to its :class:`~mgspec.errors.Location`, and the sha256 of the spec text.

Invariants: YAML is composed with ``yaml.SafeLoader`` only (no object construction, so no
code can run); duplicate keys, non-string keys, characters YAML refuses and tags other than the
core schema's (or core tags on the wrong kind of node, or on text they cannot read) are
:class:`~mgspec.errors.SpecError`\\ s naming file and line. Size, nesting and alias expansion are
bounded (:data:`MAX_SPEC_BYTES`, :data:`MAX_DEPTH`, :data:`MAX_VALUES`), so any input returns
quickly. Overrides are parsed by the same rules as scalars (or flat flow lists such as
``[A, B]``) and re-checked by the schema exactly like file values.
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

_YAML = "tag:yaml.org,2002:"
_MAP, _SEQ, _STR = _YAML + "map", _YAML + "seq", _YAML + "str"
_SCALAR_TAGS = {_YAML + name for name in ("str", "int", "float", "bool", "null")}
_CORE_TAGS = _SCALAR_TAGS | {_MAP, _SEQ}

#: Largest spec file or text: shipped specs are under 1 KiB; the bound keeps parsing instant.
MAX_SPEC_BYTES = 64 * 1024
#: Deepest nesting of mappings and lists (a spec needs 5); bounds the parser's recursion.
MAX_DEPTH = 32
#: Most values a spec may hold once aliases are expanded (a spec has under 100).
MAX_VALUES = 10_000


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with a nesting bound and YAML 1.2 exponent floats (``1e9``).

    YAML 1.1 reads ``1e9`` and ``1.0e9`` as strings; JSON and YAML 1.2 read them as numbers, as
    users expect.
    """

    def __init__(self, text: str, name: str, lines: bool = True) -> None:
        self.spec_name, self.lines, self.depth = name, lines, 0
        super().__init__(text)

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise SpecError(
                    f"nesting deeper than {MAX_DEPTH} levels", _mark(self.spec_name, self.peek_event(), self.lines)
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.add_implicit_resolver(
    _YAML + "float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


@dataclass
class Source:
    """A spec's raw data with locations; ``name`` is the file path shown in errors."""

    name: str
    text: str
    data: dict[str, Any]
    locations: dict[DataPath, Location] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode(errors="surrogatepass")).hexdigest()

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


def _mark(name: str, node: yaml.Node | yaml.Event | None, lines: bool = True) -> Location:
    if node is None or not lines:
        return Location(name)
    return Location(name, node.start_mark.line + 1, node.start_mark.column + 1)


def _short(tag: str) -> str:
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


class _Converter:
    """Composed YAML nodes -> plain data, recording the location of every value.

    Only the core schema's tags are accepted, each on its own kind of node, and a tagged scalar
    must read as its tag (PyYAML's constructors would fail with IndexError, KeyError or
    ValueError). Aliases are expanded, but never into themselves and never beyond
    :data:`MAX_VALUES` values or :data:`MAX_DEPTH` levels (a "billion laughs" file is a few
    hundred bytes).
    """

    def __init__(self, loader: _Loader, name: str, lines: bool = True) -> None:
        self.loader, self.name, self.lines = loader, name, lines
        self.locations: dict[DataPath, Location] = {}
        self.values = 0
        self.active: set[int] = set()

    def where(self, node: yaml.Node) -> Location:
        return _mark(self.name, node, self.lines)

    def convert(self, node: yaml.Node, path: DataPath = ()) -> Any:
        if node.tag not in _CORE_TAGS:
            raise SpecError(
                f"YAML tag {node.tag!r} is not allowed",
                self.where(node),
                format_path(path) or None,
                hint="specs hold plain mappings, lists, strings and numbers only",
            )
        self.values += 1
        if self.values > MAX_VALUES:
            raise SpecError(
                f"the spec expands to more than {MAX_VALUES:,} values",
                self.where(node),
                format_path(path) or None,
                hint="aliases (*name) copy their anchor's value each time they are used",
            )
        if len(path) >= MAX_DEPTH:
            raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", self.where(node), format_path(path) or None)
        self.locations[path] = self.where(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        kind = "mapping" if isinstance(node, yaml.MappingNode) else "list"
        if node.tag != (_MAP if kind == "mapping" else _SEQ):
            raise SpecError(f"YAML tag {_short(node.tag)!r} does not fit a {kind}", self.where(node), format_path(path))
        if id(node) in self.active:
            raise SpecError("an alias refers to a value that contains it", self.where(node), format_path(path) or None)
        self.active.add(id(node))
        try:
            if kind == "list":
                return [self.convert(v, path + (i,)) for i, v in enumerate(node.value)]
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.key(key_node)
                if key in out:
                    first = self.locations[path + (key,)]
                    raise SpecError(
                        f"duplicate key {key!r} (first defined at line {first.line})",
                        self.where(key_node),
                        format_path(path + (key,)),
                    )
                out[key] = self.convert(value_node, path + (key,))
            return out
        finally:
            self.active.discard(id(node))

    def key(self, node: yaml.Node) -> str:
        if node.tag == _YAML + "merge":
            raise SpecError("YAML merge keys ('<<') are not supported", self.where(node))
        if node.tag not in _CORE_TAGS:
            raise SpecError(
                f"YAML tag {node.tag!r} is not allowed",
                self.where(node),
                hint="specs hold plain mappings, lists, strings and numbers only",
            )
        if not isinstance(node, yaml.ScalarNode):
            raise SpecError("mapping keys must be strings", self.where(node))
        key = self.scalar(node, ())
        if not isinstance(key, str):
            raise SpecError(f"mapping keys must be strings, got {key!r}", self.where(node))
        return key

    def scalar(self, node: yaml.ScalarNode, path: DataPath) -> Any:
        if node.tag not in _SCALAR_TAGS:
            raise SpecError(f"YAML tag {_short(node.tag)!r} does not fit a scalar", self.where(node), format_path(path))
        if node.tag != _STR:
            # A tagged scalar must read as its tag would read it untagged (an int is a float too).
            implicit = self.loader.resolve(yaml.ScalarNode, node.value, (True, False))
            fits = implicit == node.tag or (node.tag == _YAML + "float" and implicit == _YAML + "int")
            try:
                if fits:
                    return self.loader.construct_object(node)
            except (ValueError, KeyError, IndexError, OverflowError):
                pass
            text = node.value if len(node.value) <= 20 else node.value[:20] + "..."
            raise SpecError(f"{text!r} is not a valid {_short(node.tag)}", self.where(node), format_path(path) or None)
        return self.loader.construct_object(node)


def _compose(text: str, name: str, lines: bool = True) -> tuple[yaml.Node | None, _Loader | None]:
    """Compose one YAML document; every YAML problem becomes a located SpecError."""
    loader = None
    try:
        loader = _Loader(text, name, lines)
        return loader.get_single_node(), loader
    except yaml.reader.ReaderError as exc:
        if loader is not None:
            loader.dispose()
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise SpecError(
            f"invalid YAML: character U+{ord(char):04X} is not allowed",
            Location(name, line, column) if lines else Location(name),
            hint="control characters and lone surrogates cannot appear in YAML text",
        ) from None
    except yaml.MarkedYAMLError as exc:
        if loader is not None:
            loader.dispose()
        mark = exc.problem_mark or exc.context_mark
        loc = Location(name, mark.line + 1, mark.column + 1) if mark and lines else Location(name)
        raise SpecError(f"invalid YAML: {exc.problem or exc.context}", loc) from None
    except yaml.YAMLError as exc:
        if loader is not None:
            loader.dispose()
        raise SpecError(f"invalid YAML: {exc}", Location(name)) from None
    except SpecError:
        if loader is not None:
            loader.dispose()
        raise


def parse_text(text: str, name: str = "<spec>", what: str = "spec") -> Source:
    """Parse spec text (``what``: the kind of file, as errors name it); ``name`` is used in every error location."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"the {what} is larger than {MAX_SPEC_BYTES:,} bytes", Location(name))
    root, loader = _compose(text, name)
    if root is None:
        raise SpecError(f"the {what} is empty", Location(name, 1))
    try:
        converter = _Converter(loader, name)
        data = converter.convert(root)
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise SpecError(f"a {what} must be a YAML mapping at the top level", Location(name, 1, 1))
    return Source(name, text, data, converter.locations)


def read_spec_file(path: str | Path, what: str = "spec") -> Source:
    """Read a spec (or another YAML file of mgspec's, ``what``) with every problem located."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir() and not path.is_char_device():
        # a FIFO or socket named like a spec: opening it could block forever (stdin is read by `-`)
        raise SpecError("not a regular file", Location(str(path)))
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)  # bounded: /dev/zero or a huge file cannot stall us
    except FileNotFoundError:
        noun = what if what.endswith("file") else f"{what} file"
        raise SpecError(f"no such {noun}", Location(str(path))) from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise SpecError(f"cannot read {what}: {exc.__class__.__name__}", Location(str(path))) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"the {what} is larger than {MAX_SPEC_BYTES:,} bytes", Location(str(path)))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            f"cannot read {what}: byte 0x{raw[exc.start]:02x} is not UTF-8", Location(str(path), line, column)
        ) from None
    # Universal newlines, as text mode reads them (line numbers then match editors).
    return parse_text(text.replace("\r\n", "\n").replace("\r", "\n"), str(path), what)


_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\d+)")


def parse_override_path(text: str, where: Location) -> DataPath:
    """``a.b[2].c`` or ``a.b.2.c`` -> ``('a', 'b', 2, 'c')``."""
    parts: list[str | int] = []
    if text.count(".") + text.count("[") >= MAX_DEPTH:
        raise SpecError(f"override paths are at most {MAX_DEPTH} parts long", where)
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


def _parse_value(text: str, where: Location, field: str) -> Any:
    """An override value, read by the same rules as a spec file's values."""
    root, loader = _compose(text, where.source, lines=False)
    if root is None:
        return None
    try:
        return _Converter(loader, where.source, lines=False).convert(root)
    except SpecError as exc:
        raise SpecError(exc.message, where, field, exc.hint) from None
    finally:
        loader.dispose()


def value_text(value: Any) -> str:
    """A value as ``--set`` reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def point_key(*values: Any) -> tuple[str, ...]:
    """Values that build the same network have one key: the text ``--set`` reads (``1``, ``1.0`` and
    ``'1'`` are one value; ``true`` and ``1`` are two)."""
    return tuple(value_text(int(v) if isinstance(v, float) and v.is_integer() else v).strip() for v in values)


def apply_override(source: Source, assignment: str) -> None:
    """Apply one ``PATH=VALUE`` override in place; VALUE is a YAML scalar."""
    where = Location(f"--set {assignment}")
    path_text, sep, value_text = assignment.partition("=")
    if not sep or not path_text.strip():
        raise SpecError("an override must look like PATH=VALUE", where, hint="e.g. --set width=2")
    path = parse_override_path(path_text.strip(), where)
    value = _parse_value(value_text, where, format_path(path)) if value_text.strip() else None
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
