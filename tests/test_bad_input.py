"""Malformed specs and overrides: one located SpecError, exit 2, quickly, nothing written or run.

One test per class of bad input found by fuzzing; tests/test_fuzz.py looks for new classes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

import mgspec
from mgspec import schema
from mgspec.cli.app import app
from mgspec.load import MAX_SPEC_BYTES
from tests.conftest import ROOT

runner = CliRunner()

BASE = """\
name: small
classes: 10
resolution_grid:
  block: mgnet
  levels:
    - {channels: 8, steps: 1}
    - {channels: 16, steps: 1}
"""
MGIC = """\
name: small_mgic
classes: 10
resolution_grid:
  block: resnet_basic
  levels:
    - {channels: 16, steps: 1}
channel_grid: {group_size: 2, coarsest: 2}
"""


def with_line(line: str, base: str = BASE) -> str:
    return base + line + "\n"


def replace(old: str, new: str, base: str = BASE) -> str:
    assert old in base
    return base.replace(old, new, 1)


def levels(*items: str) -> str:
    return replace("    - {channels: 8, steps: 1}\n    - {channels: 16, steps: 1}\n", "".join(items))


# (id, spec text, expected "line:column: field: message" fragment after the file name)
CASES = [
    # Characters YAML refuses
    ("nul", with_line("description: a\x00b"), ":8:15: invalid YAML: character U+0000 is not allowed"),
    ("control", with_line("description: a\x07b"), ":8:15: invalid YAML: character U+0007 is not allowed"),
    ("escape", with_line("description: \x1b[31m"), ":8:14: invalid YAML: character U+001B is not allowed"),
    # Core tags with bad content, on keys, on collections
    ("int_empty", replace("classes: 10", 'classes: !!int ""'), ":2:10: classes: '' is not a valid !!int"),
    ("bool_maybe", with_line("head: {bias: !!bool maybe}"), ":8:14: head.bias: 'maybe' is not a valid !!bool"),
    ("float_xyz", replace("classes: 10", "classes: !!float xyz"), ":2:10: classes: 'xyz' is not a valid !!float"),
    ("null_text", with_line("channel_grid: !!null text"), ":8:15: channel_grid: 'text' is not a valid !!null"),
    ("hex_empty", replace("classes: 10", "classes: 0x_"), ":2:10: classes: '0x_' is not a valid !!int"),
    ("long_int", replace("classes: 10", "classes: " + "9" * 5000), ":2:10: classes: '9999999999"),
    (
        "key_tag",
        with_line("? !!python/name:os.system x\n: 1"),
        ":8:3: YAML tag 'tag:yaml.org,2002:python/name:os.system' is not allowed",
    ),
    ("key_int_tag", with_line("!!int 3: x"), ":8:1: mapping keys must be strings, got 3"),
    ("key_mapping", with_line("? {a: 1}\n: x"), ":8:3: mapping keys must be strings"),
    (
        "str_on_list",
        replace("classes: 10", "classes: !!str [1]"),
        ":2:10: classes: YAML tag '!!str' does not fit a list",
    ),
    ("seq_on_map", with_line("head: !!seq {bias: true}"), ":8:7: head: YAML tag '!!seq' does not fit a mapping"),
    (
        "map_on_scalar",
        replace("classes: 10", "classes: !!map 10"),
        ":2:10: classes: YAML tag '!!map' does not fit a scalar",
    ),
    # Aliases and nesting
    ("cyclic_alias", with_line("head: &a {bias: *a}"), ":8:7: head.bias: an alias refers to a value that contains it"),
    (
        "billion_laughs",
        with_line(
            "description: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"x{i}: &a{i} [{', '.join(['*a' if i == 0 else f'*a{i - 1}'] * 10)}]\n" for i in range(9))
        ).replace("\n\n", "\n"),
        "the spec expands to more than 10,000 values",
    ),
    ("deep_nesting", with_line("description: " + "[" * 500 + "]" * 500), ":8:45: nesting deeper than 32 levels"),
    # Numbers
    ("width_inf", with_line("width: .inf"), ":8:8: width: input should be a finite number"),
    ("width_nan", with_line("width: .nan"), ":8:8: width: input should be a finite number"),
    ("width_huge", with_line("width: 1e9"), ":8:8: width: input should be less than or equal to 16384"),
    ("width_times_channels", with_line("width: 4096"), ":6:18: resolution_grid.levels[0].channels: width 4096 x 8"),
    (
        "channels_huge",
        levels("    - {channels: 100000000000, steps: 1}\n"),
        "channels: input should be less than or equal to 16384",
    ),
    (
        "steps_huge",
        levels("    - {channels: 8, steps: 1000000}\n"),
        ":6:28: resolution_grid.levels[0].steps: input should be less",
    ),
    (
        "steps_total",
        levels(*["    - {channels: 8, steps: 256}\n"] * 9),
        ":6:5: resolution_grid.levels: 2,304 smoothing steps in all exceed the limit of 2,048",
    ),
    (
        "vcycle_work",
        replace("steps: 1}", "steps: 200}", MGIC).replace("coarsest: 2}", "coarsest: 1, pre_smoothing: 4}"),
        # widths 16, 8, 4, 2, 1: 5 x (4 + 1) steps and the coarse solve, 200 times
        "resolution_grid.levels: 5,200 smoothing steps in all exceed the limit of 2,048",
    ),
    (
        "levels_many",
        levels(*["    - {channels: 8, steps: 1}\n"] * 13),
        ":6:5: resolution_grid.levels: list should have at most 12",
    ),
    (
        "classes_huge",
        replace("classes: 10", "classes: 10000000000"),
        ":2:10: classes: input should be less than or equal",
    ),
    ("size_huge", with_line("input: {size: 100000000}"), ":8:15: input.size: input should be less than or equal"),
    (
        "smoothing_huge",
        with_line("channel_grid: {group_size: 1, coarsest: 1, post_smoothing: 1000}"),
        "post_smoothing: input",
    ),
    # Names
    (
        "duplicate_level_names",
        levels("    - {name: a, channels: 8, steps: 1}\n", "    - {name: a, channels: 16, steps: 1}\n"),
        ":7:14: resolution_grid.levels[1].name: level name 'a' is used by level 1 too",
    ),
    (
        "level_named_like_a_default",
        levels("    - {channels: 8, steps: 1}\n", "    - {name: l1, channels: 16, steps: 1}\n"),
        ":7:14: resolution_grid.levels[1].name: level name 'l1' is used by level 1 too",
    ),
    ("level_training", levels("    - {name: training, channels: 8, steps: 1}\n"), "'training' is reserved"),
    ("level_modules", levels("    - {name: _modules, channels: 8, steps: 1}\n"), "'_modules' is reserved"),
    ("level_parameters", levels("    - {name: _parameters, channels: 8, steps: 1}\n"), "'_parameters' is reserved"),
    ("spec_torch", replace("name: small", "name: torch"), ":1:7: name: 'torch' is reserved: a file torch.py would"),
    ("spec_typing", replace("name: small", "name: typing"), ":1:7: name: 'typing' is reserved"),
    ("spec_future", replace("name: small", "name: __future__"), ":1:7: name: '__future__' is reserved"),
    ("spec_init", replace("name: small", "name: __init__"), ":1:7: name: '__init__' is reserved"),
    ("spec_name_long", replace("name: small", "name: " + "a" * 300), ":1:7: name: string should have at most 64"),
    # Codegen text
    ("description_nul", with_line('description: "a\\0b"'), ":8:14: description: character U+0000 is not allowed"),
    (
        "description_surrogate",
        with_line('description: "\\ud800"'),
        ":8:14: description: character U+D800 is not allowed",
    ),
    ("description_bidi", with_line('description: "\\u202e"'), ":8:14: description: character U+202E is not allowed"),
]


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("text,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_spec_is_one_located_error(text, fragment, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    start = time.perf_counter()
    with pytest.raises(mgspec.SpecError) as info:
        mgspec.count_spec(path)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert fragment in message, message
    assert info.value.location is not None


CLI_CASES = [
    c for c in CASES if c[0] in ("nul", "int_empty", "cyclic_alias", "deep_nesting", "steps_huge", "spec_torch")
]


@pytest.mark.parametrize("text,fragment", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
@pytest.mark.parametrize("command", ["count", "validate", "compile"])
def test_cli_exits_2_and_writes_nothing(text, fragment, command, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    args = [command, str(path)] + (["-o", str(out)] if command == "compile" else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}") and fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the message and perhaps a hint
    assert not out.exists()


def test_python_strings_with_refused_characters_are_located():
    with pytest.raises(mgspec.SpecError) as info:
        mgspec.parse_text("name: x\x00\n", "inline")
    assert str(info.value).startswith("inline:1:8: invalid YAML: character U+0000 is not allowed")
    with pytest.raises(mgspec.SpecError) as info:
        mgspec.parse_text("name: x\ud800\n", "inline")
    assert "character U+D800 is not allowed" in str(info.value)


def test_oversized_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(BASE + "# " + "x" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(mgspec.SpecError) as info:
        mgspec.count_spec(path)
    assert f"larger than {MAX_SPEC_BYTES:,} bytes" in str(info.value)


def test_yaml_1_2_exponent_floats_are_numbers(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(BASE.replace("channels: 8,", "channels: 4,") + "width: 2e0\n")
    assert mgspec.load_spec(path)[0].width == 2.0
    assert mgspec.load_spec(path, ["width=1E0"])[0].width == 1.0


OVERRIDE_CASES = [
    ("classes=!!int ''", "--set classes=!!int '': classes: '' is not a valid !!int"),
    ("head.bias=!!bool maybe", "--set head.bias=!!bool maybe: head.bias: 'maybe' is not a valid !!bool"),
    ("width=!!float xyz", "--set width=!!float xyz: width: 'xyz' is not a valid !!float"),
    ("width=.inf", "--set width=.inf: width: input should be a finite number"),
    ("description=a\x00", "--set description=a\x00: invalid YAML: character U+0000 is not allowed"),
    ("description=" + "[" * 500, "nesting deeper than 32 levels"),
    ("description=&a [*a]", "--set description=&a [*a]: description: an alias refers to a value that contains it"),
    ("description=!!python/name:os.system x", "YAML tag 'tag:yaml.org,2002:python/name:os.system' is not allowed"),
    ("resolution_grid.levels[0].steps=1000000", "resolution_grid.levels[0].steps: input should be less than"),
    ("resolution_grid.levels[1].name=l1", "level name 'l1' is used by level 1 too"),
    ("name=typing", "'typing' is reserved"),
    ('description="\\ud800"', "character U+D800 is not allowed"),
    ("width=1e9", "width: input should be less than or equal to 16384"),
    ("a" + ".a" * 100 + "=1", "paths are at most 32 parts long"),
]


@pytest.mark.parametrize("override,fragment", OVERRIDE_CASES, ids=[c[0][:30] for c in OVERRIDE_CASES])
def test_bad_override_is_one_located_error(override, fragment, tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(BASE)
    start = time.perf_counter()
    with pytest.raises(mgspec.SpecError) as info:
        mgspec.count_spec(path, [override])
    assert time.perf_counter() - start < 2
    assert fragment in str(info.value)
    assert str(info.value).startswith("--set ")


def test_limits_are_the_documented_ones():
    text = (ROOT / "docs" / "spec-language.md").read_text()
    for value in (schema.MAX_LEVELS, schema.MAX_STEPS, schema.MAX_SMOOTHING_STEPS, schema.MAX_CHANNELS):
        assert f"{value:,}" in text
    assert f"{MAX_SPEC_BYTES // 1024} KiB" in text


def test_list_reports_bad_files_and_lists_the_others(tmp_path):
    (tmp_path / "good.yaml").write_text(BASE)
    (tmp_path / "bad.yaml").write_text(BASE + "description: a\x00b\n")
    result = runner.invoke(app, ["list", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "small" in result.stdout and "good.yaml" in result.stdout
    assert result.stderr == (
        f"error: {tmp_path / 'bad.yaml'}:8:15: invalid YAML: character U+0000 is not allowed\n"
        "  hint: control characters and lone surrogates cannot appear in YAML text\n"
        "1 of 2 specs are invalid\n"
    )


HANGS = {
    "billion_laughs": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"a{i}: &a{i} [{', '.join(['*a' if i == 0 else f'*a{i - 1}'] * 10)}]\n" for i in range(9)),
    "cyclic": "a: &a [*a]\n",
    "deep": "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "steps": "resolution_grid:\n  block: mgnet\n  levels: [{channels: 8, steps: 1000000}]\n",
}


@pytest.mark.parametrize("name", sorted(HANGS))
def test_real_process_returns_quickly_without_traceback(name, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text("name: x\nclasses: 10\n" + HANGS[name])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "mgspec", "count", str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith(f"error: {path}")


def test_long_values_are_shortened_in_messages(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(replace("classes: 10", "classes: " + "x" * 50_000))
    with pytest.raises(mgspec.SpecError) as info:
        mgspec.count_spec(path)
    assert str(info.value).endswith("classes: input should be a valid integer, got '" + "x" * 56 + "...")


def test_reserved_level_names_are_torch_s_container_attributes():
    """The written-out list (spec validation needs no torch) is what torch defines today."""
    from torch import nn

    from mgspec.schema import CONTAINER_ATTRIBUTES

    public = {n for n in set(dir(nn.ModuleDict())) | set(dir(nn.Module())) if not n.startswith("_")}
    assert CONTAINER_ATTRIBUTES == public
