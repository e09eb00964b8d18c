"""Claims the docs make that a newcomer relies on: the install line, SiC and the V-cycle's P_k."""

from __future__ import annotations

import re

import pytest

import mgspec
from tests.conftest import ROOT


def test_readme_says_how_to_get_the_cpu_build_from_a_public_index():
    readme = (ROOT / "README.md").read_text()
    assert 'TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"' in readme
    assert "installs the CPU build" not in readme, "on the public PyPI the pinned wheel is the CUDA build"
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.search(r"^TORCH \?= (.+)$", makefile, flags=re.MULTILINE).group(1)
    assert f"TORCH={pinned}" in readme.replace("`", ""), "README names the Makefile's default"


def test_architectures_defines_sic_and_how_p_prolongs():
    text = (ROOT / "docs" / "architectures.md").read_text()
    assert "**SiC** is one V-cycle over the *channels* of a resolution level" in text
    assert "P_k prolongs the whole coarse result" in text and "`V - u_c`" not in text


def test_p_prolongs_the_whole_coarse_cycle_result():
    """What architectures.md says, in the graph: P's input is the coarse cycle's output, not a difference."""
    graph = mgspec.compile_graph(ROOT / "specs" / "mgiad_cifar10.yaml")
    prolongations = [n for n, d in graph.nodes(data=True) if (d["node"].slot or "").endswith(".P")]
    assert prolongations
    for name in prolongations:
        node = graph.nodes[name]["node"]
        (arg,) = node.args
        source = graph.nodes[arg]["node"]
        assert source.block.startswith(node.block + ".coarse"), (name, arg)
        assert source.op != "sub", f"{name} prolongs a difference ({arg}), not the coarse result"


def test_training_doc_says_results_depend_on_the_thread_count():
    text = (ROOT / "docs" / "training.md").read_text()
    assert "**The thread count changes the results.**" in text and "`--threads`" in text


# -- every snippet of the docs runs, every number they quote next to a spec is what `count` says --

DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", flags=re.MULTILINE | re.DOTALL)


def snippets(language: str) -> list[tuple[str, str]]:
    """(``file:line``, text) of every fenced block of ``language`` in the docs and the README."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(2)))
    return found


YAML = snippets("yaml")
PYTHON = snippets("python")


def _is_signature(code: str) -> bool:
    """A generated API entry: one `def f(...) -> T` or `class C(...)` line, a listing, not a program."""
    lines = code.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(("def ", "class "))


def test_the_docs_have_snippets_to_check():
    assert len(YAML) >= 4 and len([c for _, c in PYTHON if not _is_signature(c)]) >= 2


@pytest.mark.parametrize(("where", "text"), YAML, ids=[w for w, _ in YAML])
def test_every_yaml_snippet_is_valid(where, text, tmp_path):
    import yaml

    data = yaml.safe_load(text)
    if "resolution_grid" in data:  # a spec: it validates and builds
        mgspec.compile_graph(text)
        return
    if "search" in data:  # studies.md: a search replaces the grid and its objectives of the study above it
        said = "A search replaces `grid` (and the top-level `objectives`, which are for a grid) with `search`"
        assert said in (ROOT / "docs" / "studies.md").read_text()
        study = next(t for w, t in YAML if w.startswith("docs/studies.md") and "grid:" in t)
        kept = [line for line in study.splitlines() if not line.startswith(("grid:", "  ", "objectives:"))]
        text = "\n".join(kept) + "\n" + text
    from mgspec.study.model import load_study

    (tmp_path / "specs").symlink_to(ROOT / "specs")
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "study.yaml"
    path.write_text(text)
    assert load_study(path).spec_path.resolve() == (ROOT / "specs" / "mgiad_small_cifar10.yaml").resolve()


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[w for w, _ in PYTHON])
def test_every_python_snippet_runs(where, code, monkeypatch):
    if _is_signature(code):
        pytest.skip("a signature listing generated from the code (test_docs keeps docs/api.md fresh)")
    monkeypatch.chdir(ROOT)
    exec(compile(code, where, "exec"), {"__name__": "snippet"})
