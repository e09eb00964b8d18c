"""User errors: one SpecError with file:line:column, field and message; the CLI exits 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import mgspec
from mgspec.cli.app import app
from tests.conftest import ROOT

BAD = "tests/bad_specs"

# file -> the exact message (first line) and hint.
PINNED = {
    "syntax.yaml": ("syntax.yaml:4:9: invalid YAML: expected ',' or '}', but got ':'", None),
    "misspelled.yaml": ("misspelled.yaml:3:9: clases: unknown field 'clases'", "did you mean 'classes'?"),
    "type.yaml": ("type.yaml:2:10: classes: input should be a valid integer, got 'ten'", None),
    "width.yaml": ("width.yaml:3:8: width: input should be greater than 0, got 0", None),
    "channels.yaml": (
        "channels.yaml:6:18: resolution_grid.levels[0].channels: input should be greater than 0, got 0",
        None,
    ),
    "groups.yaml": (
        "groups.yaml:8:15: channel_grid.group_size: group size 3 does not divide channel level width 64 of level l1 "
        "(widths 64, 32, 16)",
        "choose a group size that divides every grouped channel level width",
    ),
    "coarsest.yaml": (
        "coarsest.yaml:9:13: channel_grid.coarsest: coarsest width 64 is wider than level l1 (32 channels)",
        "use a coarsest width <= 32",
    ),
    "pytag.yaml": (
        "pytag.yaml:1:7: name: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
        "specs hold plain mappings, lists, strings and numbers only",
    ),
    "dup.yaml": ("dup.yaml:3:1: classes: duplicate key 'classes' (first defined at line 2)", None),
    "block.yaml": (
        "block.yaml:4:10: resolution_grid.block: unknown block kind 'densenet'",
        "expected one of: 'resnet_basic', 'mgnet'",
    ),
    "irrelevant.yaml": (
        "irrelevant.yaml:5:10: resolution_grid.share: unknown field 'share'",
        "'share' belongs to 'block: mgnet' grids",
    ),
    "name.yaml": ("name.yaml:1:7: name: '2fast' is not a valid name (ASCII letters, digits, '_'; not a keyword)", None),
    "empty.yaml": ("empty.yaml:1: the spec is empty", None),
    "list.yaml": ("list.yaml:1:1: a spec must be a YAML mapping at the top level", None),
}


def expected_text(name: str) -> str:
    message, hint = PINNED[name]
    text = f"{BAD}/{message}"
    return text + (f"\n  hint: {hint}" if hint else "")


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_library_raises_located_spec_error(name):
    with pytest.raises(mgspec.SpecError) as info:
        mgspec.count_spec(f"{BAD}/{name}")
    assert str(info.value) == expected_text(name)
    assert info.value.location.source == f"{BAD}/{name}"
    assert info.value.location.line is not None


@pytest.mark.parametrize("name", sorted(PINNED))
@pytest.mark.parametrize("command", ["count", "validate"])
def test_cli_prints_one_message_and_exits_2(name, command):
    result = CliRunner().invoke(app, [command, f"{BAD}/{name}"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {expected_text(name)}\n"
    assert result.stdout == ""


def test_python_tag_is_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\nclasses: 10\n")
    with pytest.raises(mgspec.SpecError):
        mgspec.count_spec(spec)
    assert not marker.exists()


OVERRIDE_ERRORS = [
    (["foo.bar=1"], "--set foo.bar=1: foo: unknown field 'foo'"),
    (
        ["channel_grid.gruop_size=1"],
        "--set channel_grid.gruop_size=1: channel_grid.gruop_size: unknown field 'gruop_size'",
    ),
    (["width"], "--set width: an override must look like PATH=VALUE"),
    (["width=-2"], "--set width=-2: width: input should be greater than 0, got -2"),
    (["width=1.01"], "--set width=1.01: width: width 1.01 x 64 channels = 64.64 is not a whole number of channels"),
    (
        ["resolution_grid.levels[7].channels=8"],
        "--set resolution_grid.levels[7].channels=8: unknown path 'resolution_grid.levels[7].channels': "
        "no list item resolution_grid.levels[7]",
    ),
    (
        ["channel_grid.coarsest=65"],
        "--set channel_grid.coarsest=65: channel_grid.coarsest: coarsest width 65 is wider than level l1 (64 channels)",
    ),
    (
        ["channel_grid.group_size=5"],
        "--set channel_grid.group_size=5: channel_grid.group_size: group size 5 does not divide channel level width "
        "128 of level l2 (widths 128, 64)",
    ),
]


@pytest.mark.parametrize("overrides,message", OVERRIDE_ERRORS, ids=lambda v: str(v))
def test_override_errors_name_the_override(overrides, message):
    with pytest.raises(mgspec.SpecError) as info:
        mgspec.count_spec("specs/mgiad_cifar10.yaml", overrides)
    assert str(info.value).split("\n")[0] == message


def test_real_process_shows_no_traceback():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "mgspec", "count", f"{BAD}/misspelled.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: tests/bad_specs/misspelled.yaml:3:9: clases: unknown field")
