"""Habits of a new user, through the installed command: several specs, stdin, list, hints, formats, pipes."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT

OK = """\
name: small
classes: 10
resolution_grid:
  block: mgnet
  levels: [{channels: 8, steps: 1}, {channels: 16, steps: 1}]
"""
BAD = "name: broken\nclases: 10\n"


def mgspec_cli(*args, stdin: str | None = None, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # output is piped, as in a script
    environment.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "mgspec", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=120,
    )


@pytest.fixture
def specs(tmp_path):
    (tmp_path / "ok.yml").write_text(OK)
    (tmp_path / "bad.yaml").write_text(BAD)
    return tmp_path


@pytest.mark.slow
def test_validate_checks_every_spec_and_fails_if_any_does(specs):
    result = mgspec_cli("validate", specs / "ok.yml", specs / "bad.yaml", ROOT / "specs" / "mgiad_cifar10.yaml")
    assert result.returncode == 2
    assert f"{specs / 'ok.yml'}: ok (small, mgnet" in result.stdout
    assert "mgiad_cifar10.yaml: ok (mgiad_cifar10, mgiad" in result.stdout
    assert f"error: {specs / 'bad.yaml'}:2:9: clases: unknown field 'clases'" in result.stderr
    assert "1 of 3 specs are invalid" in result.stderr and "Traceback" not in result.stderr
    assert mgspec_cli("validate", specs / "ok.yml", ROOT / "specs" / "mgnet_cifar10.yaml").returncode == 0


@pytest.mark.slow
def test_dash_reads_the_spec_from_stdin(specs, tmp_path):
    counted = mgspec_cli("count", "-", "-f", "json", "--set", "width=2", stdin=OK)
    assert counted.returncode == 0, counted.stderr
    assert (
        json.loads(counted.stdout)["total"]
        == json.loads(mgspec_cli("count", specs / "ok.yml", "-f", "json", "--set", "width=2").stdout)["total"]
    )
    assert mgspec_cli("validate", "-", stdin=OK).stdout.startswith("-: ok (small")
    bad = mgspec_cli("validate", "-", stdin=BAD)
    assert bad.returncode == 2 and "error: <stdin>:2:9: clases" in bad.stderr
    compiled = mgspec_cli("compile", "-", "-o", tmp_path / "gen", stdin=OK)
    assert compiled.returncode == 0 and (tmp_path / "gen" / "small.py").is_file()
    shown = mgspec_cli("show", "-", stdin=OK)
    assert shown.returncode == 0 and " = conv(" in shown.stdout
    assert mgspec_cli("graph", "-", "-f", "mermaid", stdin=OK).stdout.startswith("flowchart")


def test_list_reports_invalid_specs_and_reads_yml(specs):
    result = mgspec_cli("list", "--dir", specs)
    assert result.returncode == 2, result.stderr  # listed, and reported as a user error
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    assert any("ok.yml" in r and "small" in r and "mgnet" in r for r in rows)
    assert any("bad.yaml" in r and "invalid" in r and "unknown field 'clases'" in r for r in rows)
    assert "1 of 2 specs are invalid" in result.stderr


def test_list_refuses_a_missing_folder(tmp_path):
    result = mgspec_cli("list", "--dir", tmp_path / "nope")
    assert result.returncode == 2
    assert (
        result.stderr.startswith(f"error: {tmp_path / 'nope'}: no such directory") and "Traceback" not in result.stderr
    )


@pytest.mark.slow
def test_compile_check_says_missing_or_stale_and_repeats_the_set_options(specs, tmp_path):
    out = tmp_path / "gen"
    missing = mgspec_cli("compile", specs / "ok.yml", "-o", out, "--check", "--set", "width=2", "-s", "classes=5")
    assert missing.returncode == 1
    named = out / "small_width_2_classes_5.py"  # a spec compiled with overrides is named after them
    assert f"missing: {named}" in missing.stderr and "stale" not in missing.stderr
    fix = missing.stderr.splitlines()[-1].removeprefix("update with: ")
    assert fix == f"mgspec compile {specs / 'ok.yml'} -o {out} --set width=2 --set classes=5"
    assert not out.exists()
    wrote = mgspec_cli(*fix.split()[1:])  # the printed command, run as printed
    assert wrote.returncode == 0, wrote.stderr
    assert [p.name for p in out.iterdir()] == [named.name]
    assert (
        mgspec_cli("compile", specs / "ok.yml", "-o", out, "--check", "-s", "width=2", "-s", "classes=5").returncode
        == 0
    )
    plain = mgspec_cli("compile", specs / "ok.yml", "-o", out, "--check")  # the overridden file is not the plain one
    assert plain.returncode == 1 and f"missing: {out / 'small.py'}" in plain.stderr and "stale" not in plain.stderr
    assert plain.stderr.splitlines()[-1] == f"update with: mgspec compile {specs / 'ok.yml'} -o {out}"
    assert mgspec_cli("compile", specs / "ok.yml", "-o", out).returncode == 0
    literal = mgspec_cli("compile", specs / "ok.yml", "-o", out, "--check", "--no-optimize")
    assert literal.returncode == 1 and f"stale: {out / 'small.py'}" in literal.stderr
    assert "missing" not in literal.stderr
    assert literal.stderr.splitlines()[-1].endswith(f"-o {out} --no-optimize")


@pytest.mark.slow
def test_graph_picks_the_format_from_the_extension(specs, tmp_path):
    spec = specs / "ok.yml"
    for name, start in (("g.dot", 'digraph "small"'), ("g.mmd", "flowchart TB"), ("g.json", "{")):
        result = mgspec_cli("graph", spec, "-o", tmp_path / name)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / name).read_text().startswith(start), name
    json.loads((tmp_path / "g.json").read_text())
    assert mgspec_cli("graph", spec, "-f", "dot", "-o", tmp_path / "x.json").returncode == 0
    assert (tmp_path / "x.json").read_text().startswith("digraph"), "-f wins over the extension"
    assert mgspec_cli("graph", spec).stdout.startswith("digraph"), "stdout stays DOT"


@pytest.mark.slow
def test_piped_rich_output_does_not_wrap_at_80_columns():
    result = mgspec_cli("count", ROOT / "specs" / "mgiad_cifar10.yaml")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    note = (
        "MACs count conv and linear multiply-accumulates (FLOPs = 2 x MACs); BN, ReLU and additions are not included."
    )
    assert note in lines and max(map(len, lines)) > 80
    listed = mgspec_cli("list")
    rows = [line for line in listed.stdout.splitlines() if line.startswith("│ mgiad_cifar10 ")]
    assert rows and all(len(line) > 80 for line in rows)
    assert "MGiaD, multigrid in all dimensions (cK = 64, gs = 4)" in listed.stdout


def test_cli_reference_documents_every_option_of_every_command():
    import re

    import typer.main

    from mgspec.cli.app import app

    text = (ROOT / "docs" / "cli.md").read_text()
    sections = dict(re.findall(r"^### `mgspec ([\w ]+)`\n(.*?)(?=^### |\Z)", text, flags=re.MULTILINE | re.DOTALL))
    commands = {}
    for name, command in typer.main.get_command(app).commands.items():
        sub = getattr(command, "commands", None)  # a group (`mgspec study`): each of its commands
        commands.update({f"{name} {s}": c for s, c in sub.items()} if sub else {name: command})
    for name, command in commands.items():
        assert name in sections, f"docs/cli.md has no section for {name}"
        for param in command.params:
            if param.param_type_name == "option":
                for opt in [*param.opts, *param.secondary_opts]:
                    assert f"`{opt}`" in sections[name], f"docs/cli.md: mgspec {name} {opt} is not documented"


def test_stdin_is_read_afresh_by_each_invocation_in_one_process():
    from typer.testing import CliRunner

    from mgspec.cli.app import app

    runner = CliRunner()
    assert runner.invoke(app, ["validate", "-"], input=OK).exit_code == 0
    second = runner.invoke(app, ["validate", "-"], input=BAD)
    assert second.exit_code == 2 and "<stdin>:2:9: clases" in second.stderr


def test_a_set_value_with_a_newline_keeps_the_header_one_comment_line_that_bash_reads_back(specs, tmp_path):
    out, override = tmp_path / "gen", "description=first line\nsecond line"
    done = mgspec_cli("compile", specs / "ok.yml", "-o", out, "--set", override)
    assert done.returncode == 0, done.stderr
    (written,) = out.iterdir()
    text = written.read_text()
    ast.parse(text)
    header = text.split('"""', 1)[0].splitlines()
    assert all(line.startswith("# ") for line in header) and len(header) == 3
    word = header[1].removeprefix("# With overrides: --set ")
    assert word.startswith("$'") and "\n" not in word
    echoed = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, text=True, check=True)
    assert echoed.stdout == override  # the header's command gives the same value back


@pytest.mark.slow
def test_two_override_sets_that_share_a_file_name_never_replace_each_other(specs, tmp_path):
    out = tmp_path / "gen"
    first = mgspec_cli("compile", specs / "ok.yml", "-o", out, "--set", "width=.5")
    assert first.returncode == 0, first.stderr
    (written,) = out.iterdir()
    kept = written.read_text()
    for command in (["--set", "width=5"], ["--set", "width=5", "--check"]):
        other = mgspec_cli("compile", specs / "ok.yml", "-o", out, *command)
        assert other.returncode == 2 and "Traceback" not in other.stderr
        expected = f"{written} holds another network, compiled from ok.yml with --set width=.5"
        assert expected in other.stderr, other.stderr
    assert written.read_text() == kept and [p.name for p in out.iterdir()] == [written.name]
    again = mgspec_cli("compile", specs / "ok.yml", "-o", out, "--set", "width = .5")  # the same override
    assert again.returncode == 0 and f"unchanged {written}" in again.stdout, again.stderr

    # A spec whose own name is the overridden file's name: the same file name, another network.
    (specs / "named.yml").write_text(OK.replace("name: small", "name: small_width_5"))
    named = mgspec_cli("compile", specs / "named.yml", "-o", out)
    assert named.returncode == 2 and "with --set width=.5" in named.stderr, named.stderr
    assert written.read_text() == kept


def test_compile_never_replaces_a_file_it_did_not_generate(specs, tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    mine = out / "small.py"
    mine.write_text("# my own model\n")
    done = mgspec_cli("compile", specs / "ok.yml", "-o", out)
    assert done.returncode == 2 and f"{mine} is not a file mgspec generated" in done.stderr, done.stderr
    assert mine.read_text() == "# my own model\n"
    mine.unlink()
    os.mkfifo(mine)  # reading it would wait for a writer
    fifo = mgspec_cli("compile", specs / "ok.yml", "-o", out)
    assert fifo.returncode == 2 and f"{mine} is not a regular file" in fifo.stderr, fifo.stderr


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(value=_TEXT)
def test_a_header_word_is_one_comment_line_that_bash_reads_back(value):
    """Any --set text (but NUL, which no argv holds): the header's word keeps the comment one line
    and bash reads back exactly the text (found by hand first: newlines, quotes, control characters)."""
    from mgspec.codegen.view import shell_word

    word = shell_word(f"description={value}")
    line = f"# With overrides: --set {word}"
    assert len(line.splitlines()) == 1 and ast.parse(line + "\nx = 1\n")
    for locale in ("C.UTF-8", "C"):  # the same bytes whatever the reader's locale
        env = {**os.environ, "LC_ALL": locale}
        echoed = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, env=env, check=True)
        assert echoed.stdout.decode("utf-8") == f"description={value}", locale
