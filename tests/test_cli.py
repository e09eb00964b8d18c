"""The CLI: help of every command, count formats, schema sync, list, show and graph export."""

from __future__ import annotations

import csv
import io
import json
import re

import networkx as nx
import pytest
from typer.testing import CliRunner

import mgspec
from mgspec.cli.app import app
from tests.conftest import ROOT, SPECS, spec_id

COMMANDS = ["validate", "count", "compile", "schema", "list", "show", "graph", "train", "evaluate", "sweep", "export"]
COMMANDS += ["paper", "reproduce", "predict"]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command):
    out = invoke(command, "--help")
    assert f"Usage: mgspec {command}" in re.sub(r"\x1b\[[0-9;]*m", "", out)


def test_top_level_help_lists_every_command():
    out = invoke("--help")
    for command in COMMANDS:
        assert command in out


def test_count_formats_agree():
    data = json.loads(invoke("count", "specs/mgiad_cifar10.yaml", "--format", "json"))
    assert {"name", "total", "by_level", "by_operator", "macs"} <= set(data)
    assert data["total"] == 393_034
    rows = list(csv.DictReader(io.StringIO(invoke("count", "specs/mgiad_cifar10.yaml", "-f", "csv"))))
    assert [r for r in rows if r["section"] == "total"][0]["weights"] == "393034"
    table = invoke("count", "specs/mgiad_cifar10.yaml")
    assert "393,034" in table and "unused" in table
    assert (
        json.loads(invoke("count", "specs/mgiad_cifar10.yaml", "-f", "json", "--input-size", "64"))["macs"]
        > data["macs"]
    )


def test_unknown_format_is_a_user_error():
    result = runner.invoke(app, ["count", "specs/mgiad_cifar10.yaml", "-f", "xml"])
    assert result.exit_code == 2
    assert result.stderr == "error: unknown format 'xml'\n  hint: use table, json or csv\n"


def test_schema_is_committed_and_in_sync():
    assert (ROOT / "docs" / "spec.schema.json").read_text() == invoke("schema") == mgspec.json_schema()


@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_specs_point_at_the_schema(path):
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=../docs/spec.schema.json"


def test_list_names_every_spec_with_family_and_weights():
    out = invoke("list")
    for path in SPECS:
        counts = mgspec.count_spec(path)
        assert re.search(rf"{counts.name}\s.*{counts.family}\s.*{counts.total:,}", out), counts.name


def test_show_prints_every_op_once():
    graph = mgspec.compile_graph("specs/mgnet_small_cifar10.yaml")
    out = invoke("show", "specs/mgnet_small_cifar10.yaml")
    assert sum(1 for line in out.splitlines() if " = " in line) == len(graph)
    assert "levels.l2.A = conv(" in out and "shared]" in out


@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_node_link_json_round_trips(path):
    graph = mgspec.compile_graph(path.relative_to(ROOT))
    data = json.loads(invoke("graph", str(path.relative_to(ROOT)), "-f", "json"))
    back = nx.node_link_graph(data, edges="edges")
    assert set(back.nodes) == set(graph.nodes)
    assert set(back.edges) == set(graph.edges)
    assert set(back.graph["slots"]) == set(graph.graph["slots"])
    for node_id in graph.nodes:
        assert back.nodes[node_id]["op"] == graph.nodes[node_id]["node"].op


def _balanced(text: str, open_: str, close: str) -> bool:
    depth = 0
    for line in text.splitlines():
        depth += (
            line.count(open_) - line.count(close)
            if close != "end"
            else (1 if line.strip().startswith("subgraph") else -1 if line.strip() == "end" else 0)
        )
        if depth < 0:
            return False
    return depth == 0


def test_dot_has_level_clusters_nested_channel_levels_and_shared_marks():
    graph = mgspec.compile_graph("specs/mgiad_cifar10.yaml")
    dot = invoke("graph", "specs/mgiad_cifar10.yaml", "-f", "dot")
    assert dot.startswith('digraph "mgiad_cifar10" {') and _balanced(dot, "{", "}")
    for cluster in ("cluster_levels.l1", "cluster_levels.l3.cycle", "cluster_levels.l3.cycle.coarse.coarse"):
        assert f'subgraph "{cluster}"' in dot
    assert dot.count("->") == graph.number_of_edges() + sum(
        line.count("->") for line in dot.splitlines() if "label=" in line
    )
    assert "[shared]" in dot
    if which := __import__("shutil").which("dot"):
        import subprocess

        subprocess.run([which, "-Tsvg"], input=dot, text=True, check=True, capture_output=True)


def test_mermaid_is_well_formed():
    graph = mgspec.compile_graph("specs/mgiad_cifar10.yaml")
    text = invoke("graph", "specs/mgiad_cifar10.yaml", "-f", "mermaid")
    assert text.startswith("flowchart TB\n") and _balanced(text, "subgraph", "end")
    assert sum(1 for line in text.splitlines() if "-->" in line) == graph.number_of_edges()
    assert "stroke:" in text and "[shared]" in text


def test_graph_writes_files_and_explains_missing_graphviz(tmp_path, monkeypatch):
    out = tmp_path / "g.mmd"
    invoke("graph", "specs/resnet20_cifar10.yaml", "-f", "mermaid", "-o", str(out))
    assert out.read_text().startswith("flowchart TB")
    monkeypatch.setattr("shutil.which", lambda name: None)
    result = runner.invoke(app, ["graph", "specs/resnet20_cifar10.yaml", "-o", str(tmp_path / "g.svg")])
    assert result.exit_code == 2
    assert "needs Graphviz's 'dot', which is not installed" in result.stderr
    assert not (tmp_path / "g.svg").exists()


def test_compile_check_and_atomic_unchanged_writes(tmp_path):
    out = tmp_path / "gen"
    stale = runner.invoke(app, ["compile", "specs/resnet20_cifar10.yaml", "-o", str(out), "--check"])
    assert stale.exit_code == 1 and "missing: " in stale.stderr  # not yet written: missing, not stale
    assert not out.exists()  # --check writes nothing
    assert "wrote" in invoke("compile", "specs/resnet20_cifar10.yaml", "-o", str(out))
    target = out / "resnet20_cifar10.py"
    assert target.read_text() == (ROOT / "generated" / "resnet20_cifar10.py").read_text()
    mtime = target.stat().st_mtime_ns
    assert "unchanged" in invoke("compile", "specs/resnet20_cifar10.yaml", "-o", str(out))
    assert target.stat().st_mtime_ns == mtime
    assert invoke("compile", "specs/resnet20_cifar10.yaml", "-o", str(out), "--check").startswith(
        "1 file(s) up to date"
    )
    assert [p.name for p in out.iterdir()] == ["resnet20_cifar10.py"]  # no temp files left
    target.write_text(target.read_text() + "# edited\n")
    assert runner.invoke(app, ["compile", "specs/resnet20_cifar10.yaml", "-o", str(out), "--check"]).exit_code == 1


def test_every_command_is_in_the_cli_reference():
    text = (ROOT / "docs" / "cli.md").read_text()
    documented = set(re.findall(r"^\| `mgspec (\w+)", text, flags=re.MULTILINE))
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    groups = {g.name or g.typer_instance.info.name for g in app.registered_groups}  # `mgspec study run|report`
    assert documented == registered | groups == set(COMMANDS) | groups


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_compile_output_follows_the_umask(tmp_path, umask):
    import os

    old = os.umask(umask)
    try:
        result = runner.invoke(app, ["compile", "specs/resnet20_cifar10.yaml", "-o", str(tmp_path)])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    (written,) = tmp_path.glob("*.py")
    assert written.stat().st_mode & 0o777 == 0o666 & ~umask


def test_compile_with_overrides_names_its_file_after_them_and_says_so(tmp_path):
    plain = (ROOT / "generated" / "mgiad_cifar10.py").read_text()
    result = runner.invoke(
        app,
        [
            "compile",
            "specs/mgiad_cifar10.yaml",
            "--set",
            "width=2",
            "--set",
            "channel_grid.coarsest=32",
            "-o",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["mgiad_cifar10_width_2_coarsest_32.py"]  # never the plain name
    text = (tmp_path / "mgiad_cifar10_width_2_coarsest_32.py").read_text()
    header = text.splitlines()[:3]
    assert header[1] == "# With overrides: --set width=2 --set channel_grid.coarsest=32"
    assert (
        "`mgspec compile specs/mgiad_cifar10.yaml --set width=2 --set channel_grid.coarsest=32 -o <dir>`" in header[2]
    )
    assert "With overrides" not in plain  # the plain file has no such line
    namespace: dict = {}
    exec(compile(text, "generated", "exec"), namespace)
    weights = sum(p.numel() for p in namespace["create_model"]().parameters())
    assert weights == mgspec.count_spec("specs/mgiad_cifar10.yaml", ["width=2", "channel_grid.coarsest=32"]).total
    # the library's generate_source records them too, and --check looks for the named file
    assert mgspec.generate_source("specs/mgiad_cifar10.yaml", {"width": 2, "channel_grid.coarsest": 32}) == text
    sets = ["--set", "width=2", "--set", "channel_grid.coarsest=32"]
    check = runner.invoke(app, ["compile", "specs/mgiad_cifar10.yaml", *sets, "-o", str(tmp_path), "--check"])
    assert check.exit_code == 0, check.output


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ([], "mgiad_cifar10.py"),
        (["width=2"], "mgiad_cifar10_width_2.py"),
        (["width = 1.5"], "mgiad_cifar10_width_1_5.py"),
        (["channel_grid.share=[A,B]"], "mgiad_cifar10_share_A_B.py"),
    ],
)
def test_generated_file_names(overrides, name):
    from mgspec.codegen import file_name

    assert file_name("mgiad_cifar10", overrides) == name
