"""Property-based fuzzing of the loader, the schema and the CLI with malformed input.

Whatever the bytes of a spec or the text of an override, only :class:`mgspec.SpecError`
escapes, quickly; and a spec that validates counts exactly the weights its model holds.
Inputs are the shipped specs with mutated bytes, random values at random paths, YAML tags,
anchors and aliases, control characters and lone surrogates, and random ``--set`` overrides.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import mgspec
from mgspec.cli.app import app
from tests.conftest import SPECS

SHIPPED = [p.read_bytes() for p in SPECS]
FUZZ = settings(
    deadline=None, max_examples=120, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
#: Models up to this many weights are built to compare their parameters with the count.
BUILD_LIMIT = 400_000
#: Seconds any one input may take to be refused or counted (and built, when small).
SECONDS = 2.0

TAGS = ["!!str", "!!int", "!!float", "!!bool", "!!null", "!!map", "!!seq", "!!set", "!!binary", "!!timestamp",
        "!!python/object/apply:os.system", "!!python/name:os.system", "!foo", "!<tag:yaml.org,2002:int>"]  # fmt: skip
TOKENS = [
    *TAGS,
    *[f"{tag} " for tag in TAGS],
    "&a ", "*a", "&b [*a, *a, *a, *a]", "&a [*a]", "<<: ", "? ", ": ", "- ", "[", "]", "{", "}", ",", "#", "'", '"',
    "\n", "\n  ", "\t", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff", "\ud800", "\udfff",
    "1e9", "1e400", ".inf", "-.nan", "0x_", "0b", "9" * 40, "-1", "0", "16385", "~", "yes", "maybe", "", "l1",
    "training", "_modules", "torch", "name: ", "steps: ", "channels: ", "width: ", "levels: ", "description: ",
]  # fmt: skip


def check(spec: Any, overrides: list[str] | None = None) -> None:
    """Count ``spec``; a SpecError is fine, anything else fails; a small valid spec is also built."""
    start = time.perf_counter()
    try:
        counts = mgspec.count_spec(spec, overrides)
    except mgspec.SpecError as exc:
        assert str(exc) and exc.location is not None, repr(exc)
        assert time.perf_counter() - start < SECONDS
        event("refused")
        return
    event("valid")
    if counts.total <= BUILD_LIMIT:
        event("built")
        model = mgspec.create_model(spec, overrides)
        assert counts.total == sum(p.numel() for p in model.parameters())
    assert time.perf_counter() - start < SECONDS


_SCRATCH = Path(tempfile.mkdtemp(prefix="mgspec-fuzz-"))


def spec_file(data: bytes) -> Path:
    path = _SCRATCH / "fuzzed.yaml"
    path.write_bytes(data)
    return path


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SHIPPED)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["token", "byte", "delete", "duplicate"]))
        if kind == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS)).encode("utf-8", "surrogatepass")
        elif kind == "byte":
            data[pos : pos + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_bytes_of_shipped_specs(data):
    check(spec_file(data))


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += paths(value, prefix + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += paths(value, prefix + (i,))
    return out


NUMBERS = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 4, 7, 8, 16, 255, 256, 257, 2048, 16384, 16385, 10**6, 2**63, -(2**63)]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(TOKENS)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6
)


@st.composite
def edited(draw) -> dict:
    data = yaml.safe_load(draw(st.sampled_from(SHIPPED)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(data)))
        parent: Any = data
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1] if draw(st.booleans()) or not isinstance(parent, dict) else draw(TEXT)
        parent[key] = draw(VALUES)
    return data


@pytest.mark.slow
@FUZZ
@given(edited())
def test_random_values_at_random_paths(data):
    text = yaml.safe_dump(data, sort_keys=False)
    try:
        source = mgspec.parse_text(text, "<fuzz>")
    except mgspec.SpecError:
        return
    check(source)


def override_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").removesuffix("...")


@st.composite
def overrides(draw) -> list[str]:
    data = yaml.safe_load(SHIPPED[0])
    out = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:  # any text at all
            out.append(draw(st.text(st.characters(codec=None, exclude_categories=()), max_size=30)))
            continue
        path = draw(st.sampled_from(paths(data)))
        dotted = ".".join(str(p) for p in path)
        raw = draw(st.one_of(VALUES.map(override_text), TEXT, st.sampled_from(TOKENS).map(lambda t: t + "1")))
        out.append(f"{dotted}={raw}")
    return out


@FUZZ
@given(overrides())
def test_random_overrides(sets):
    check(SPECS[0], sets)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.sampled_from(["count", "validate", "show"]), overrides())
def test_cli_never_shows_a_traceback(data, command, sets):
    path = spec_file(data)
    args = [command, str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and result.stdout == ""
