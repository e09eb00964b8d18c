"""Stage 2, its errors: a pydantic validation failure -> one :class:`~mgspec.errors.SpecError`.

:func:`validate` reports the problem that appears first in the file, at the line and column of
the offending value (a misspelled key before the "missing" error it causes), with a "did you
mean" hint drawn from the fields of the model at that place. :mod:`mgspec.schema` re-exports it.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from mgspec.errors import SpecError
from mgspec.load import DataPath, Source, format_path
from mgspec.schema import MgNetGrid, ResNetGrid, Spec, _Located


def _data_path(data: Any, loc: tuple) -> DataPath:
    """Map a pydantic error location to a path into the data (dropping union tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (
            isinstance(node, dict)
            and part in node
            or isinstance(node, list)
            and isinstance(part, int)
            and 0 <= part < len(node)
        ):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and len(path) == len(loc) - 1:
            pass  # a missing field: point at its parent, name it in the field path
        else:
            continue
        path.append(part)
    return tuple(path)


def _known_fields(data: Any, path: DataPath) -> list[str]:
    """The field names of the model that sits at ``path`` (for did-you-mean hints)."""
    model: Any = Spec
    node: Any = data
    for part in path:
        if isinstance(part, int):
            node = node[part]
            continue
        info = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        node = node.get(part) if isinstance(node, dict) else None
        if info is None:
            return []
        model = _model_of(info.annotation, node)
    return list(getattr(model, "model_fields", {}))


def _model_of(annotation: Any, node: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = typing.get_args(annotation)
    for arg in args:
        if typing.get_origin(arg) is Annotated:
            return _model_of(arg, node)
        if typing.get_origin(arg) is list:
            return _model_of(typing.get_args(arg)[0], node)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            block = node.get("block") if isinstance(node, dict) else None
            field = arg.model_fields.get("block")
            if field is None or block in typing.get_args(field.annotation):
                return arg
    return None


def _message(err: dict, data: Any, path: DataPath) -> tuple[str, str | None]:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        fields = _known_fields(data, path[:-1])
        for other in (ResNetGrid, MgNetGrid):
            block = other.model_fields["block"].annotation.__args__[0]
            if path[:1] == ("resolution_grid",) and len(path) == 2 and key in other.model_fields and key not in fields:
                return f"unknown field {key!r}", f"{key!r} belongs to 'block: {block}' grids"
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"did you mean {close[0]!r}?" if close else (f"known fields: {', '.join(fields)}" if fields else None)
        return f"unknown field {key!r}", hint
    if kind == "missing":
        return f"missing required field {err['loc'][-1]!r}", None
    if kind == "union_tag_invalid":
        return f"unknown block kind {err['ctx']['tag']!r}", "expected one of: 'resnet_basic', 'mgnet'"
    if kind == "union_tag_not_found":
        return "missing required field 'block'", "expected one of: 'resnet_basic', 'mgnet'"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :], None
    msg = msg[0].lower() + msg[1:]
    if not isinstance(err.get("input"), (dict, list)):
        got = repr(err["input"])
        msg += f", got {got if len(got) <= 60 else got[:57] + '...'}"
    return msg, None


def validate(source: Source) -> Spec:
    """Validate a source's data; the first problem becomes a located :class:`SpecError`."""
    try:
        return Spec.model_validate(source.data)
    except ValidationError as exc:
        errors = exc.errors()

        # Report the problem that appears first in the file; ties keep pydantic's order.
        def order(err: dict) -> tuple:
            loc = source.locate(_data_path(source.data, err["loc"]))
            # A misspelled key explains the "missing" error it causes, so it goes first.
            return (loc.source != source.name, err["type"] == "missing", loc.line or 0, loc.column or 0)

        err = min(errors, key=order)
        path = _data_path(source.data, err["loc"])
        located = err.get("ctx", {}).get("error")
        if isinstance(located, _Located):
            path = _data_path(source.data, (*err["loc"], *located.path))
        if err["type"] == "union_tag_invalid":
            path += ("block",)
        message, hint = _message(err, source.data, path)
        field = format_path(path)
        if err["type"] == "missing":
            field = format_path(path + (str(err["loc"][-1]),)) if path[-1:] != (err["loc"][-1],) else field
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        raise SpecError(message, source.locate(path), field or None, hint) from None
