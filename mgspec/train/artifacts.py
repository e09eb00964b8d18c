"""Weights as self-describing safetensors files: ``model.safetensors`` and ``best.safetensors``.

A run writes its weights after every epoch as ``model.safetensors`` beside ``checkpoint.pt``
(which keeps the resume state: optimizer, scheduler, RNGs). The file is plain tensors plus a
string-to-string metadata header, readable by the ``safetensors`` library alone (no pickle, no
code); a tensor that several state_dict names share is stored once, under its first name, and
the other names are listed in the ``aliases`` metadata, so loading restores them tied.

Metadata keys (all strings; lists and numbers as JSON):

``format`` (``mgspec``), ``spec`` (its name), ``spec_sha256`` (of the spec's canonical form,
:func:`mgspec.describe.spec_sha256`), ``spec_text`` and ``spec_overrides`` (the spec as given,
so the file alone rebuilds the model), ``mgspec_version``, ``weights``, ``macs``, ``dataset``,
``class_names``, ``mean``, ``std``, ``input_size`` (channels, height, width), ``epoch``,
``test_accuracy`` (and ``val_accuracy`` when the run holds out a validation set), ``aliases``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mgspec
from mgspec import describe
from mgspec.errors import Location, SpecError

WEIGHTS, BEST = "model.safetensors", "best.safetensors"
SUFFIX = ".safetensors"
#: The metadata keys every file mgspec writes has.
KEYS = (
    "format",
    "spec",
    "spec_sha256",
    "spec_text",
    "spec_overrides",
    "mgspec_version",
    "weights",
    "macs",
    "dataset",
    "class_names",
    "mean",
    "std",
    "input_size",
    "epoch",
    "test_accuracy",
    "aliases",
)


def metadata(record: dict, spec, dataset: str, epoch: int, test_accuracy: float, **extra: Any) -> dict[str, str]:
    """The metadata header for a run's weights; ``record`` is config.json's ``spec`` entry."""
    facts = describe.preprocessing(spec, dataset)
    values = {
        "format": "mgspec",
        "spec": spec.name,
        "spec_sha256": describe.spec_sha256(spec),
        "spec_text": record["text"],
        "spec_overrides": record["overrides"],
        "mgspec_version": mgspec.__version__,
        "weights": record["weights"],
        "macs": record["macs"],
        "dataset": dataset,
        "class_names": list(facts.class_names),
        "mean": list(facts.mean),
        "std": list(facts.std),
        "input_size": list(facts.input_size),
        "epoch": epoch,
        "test_accuracy": test_accuracy,
        **extra,
    }
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _deduplicated(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Each storage once (under its first name), contiguous and on the CPU; plus alias -> kept name."""
    kept: dict[tuple, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state.items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.stride()))
        key = (*key, tuple(tensor.shape), tensor.dtype)
        if key in kept:
            aliases[name] = kept[key]
            continue
        kept[key] = name
        tensors[name] = tensor.detach().to("cpu").contiguous()
    return tensors, aliases


def save(model: nn.Module, path: str | Path, meta: dict[str, str]) -> Path:
    """Write ``model``'s state_dict as safetensors with ``meta``, atomically (a temporary name, renamed)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors, aliases = _deduplicated(model.state_dict())
    header = {**meta, "aliases": json.dumps(aliases)}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata header of a safetensors file (a located SpecError if it is not one)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except FileNotFoundError:
        raise SpecError("no such weights file", Location(str(path))) from None
    except Exception as exc:  # safetensors' own errors: a truncated or foreign file
        raise SpecError(f"not a safetensors file: {_first_line(exc)}", Location(str(path))) from None


def describe_file(path: str | Path) -> dict[str, Any]:
    """The metadata with JSON values decoded (what ``predict`` and ``evaluate`` use)."""
    meta = read_metadata(path)
    if meta.get("format") != "mgspec":
        raise SpecError(
            "not a weights file written by mgspec (no 'format: mgspec' metadata)",
            Location(str(path)),
            hint="give the spec too, or use the run directory",
        )
    out: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            out[key] = value if key in ("spec", "spec_text", "spec_sha256", "format") else json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def stored_spec(path: str | Path) -> tuple[mgspec.Source, list[str]]:
    """The spec (and overrides) a weights file was trained from, as the file holds them."""
    info = describe_file(path)
    name = f"{path} (spec {info.get('spec', '?')})"
    return mgspec.parse_text(info["spec_text"], name), list(info.get("spec_overrides") or [])


def check_spec(path: str | Path, spec) -> None:
    """Refuse weights whose spec hash differs from ``spec``'s, saying which fields differ."""
    info = describe_file(path)
    want = describe.spec_sha256(spec)
    if info.get("spec_sha256") == want:
        return
    given = json.loads(describe.canonical(spec))
    stored, _ = mgspec.load_spec(*stored_spec(path))
    differs = _differences(json.loads(describe.canonical(stored)), given)
    raise SpecError(
        f"the weights were trained from a different spec ({info.get('spec')}, sha256 "
        f"{str(info.get('spec_sha256'))[:12]}, not {want[:12]}): " + "; ".join(differs[:5] or ["the spec differs"]),
        Location(str(path)),
        hint="leave out the spec and --set options: the file's own are used",
    )


def _differences(stored: Any, given: Any, path: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for key in sorted(set(stored) | set(given)):
            out += _differences(stored.get(key), given.get(key), f"{path}.{key}" if path else key)
        return out
    if stored != given:
        return [f"{path or 'spec'}: {json.dumps(stored)} in the file, {json.dumps(given)} given"]
    return []


def load(model: nn.Module, path: str | Path, map_location: Any = "cpu") -> Path:
    """Load a safetensors file into ``model`` (aliases restored tied); a misfit is a located SpecError."""
    from safetensors.torch import load_file

    path = Path(path)
    info = describe_file(path)
    try:
        tensors = load_file(str(path), device=str(map_location))
    except Exception as exc:
        raise SpecError(f"cannot read weights: {_first_line(exc)}", Location(str(path))) from None
    for alias, kept in (info.get("aliases") or {}).items():
        if kept in tensors:
            tensors[alias] = tensors[kept]
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise SpecError(
            f"weights do not fit the spec: {len(missing)} missing and {len(unexpected)} unexpected keys"
            f" (e.g. {(missing or unexpected)[0]})",
            Location(str(path)),
        )
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise SpecError(
            f"weights do not fit the spec: {str(exc).splitlines()[-1].strip()}", Location(str(path))
        ) from None
    return path


def save_run_weights(run, model: nn.Module, epoch: int, record: dict, name: str = WEIGHTS) -> Path:
    """A run's weights after ``epoch`` as ``<run>/model.safetensors`` (or ``name``), with its metadata."""
    spec = model.graph.graph["spec"]
    extra = {"val_accuracy": record["val_acc"]} if record.get("val_acc") is not None else {}
    meta = metadata(run.record["spec"], spec, run.config.dataset, epoch, record["test_acc"], **extra)
    return save(model, run.directory / name, meta)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
