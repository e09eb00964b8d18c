"""Claims the docs make that a newcomer relies on: the install line, SiC and the V-cycle's P_k."""

from __future__ import annotations

import re

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
