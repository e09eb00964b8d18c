"""The numbers the docs quote next to a spec are what `mgspec count` gives, and the closed-form
weight formulas of docs/architectures.md (written out here, independently of mgspec) hold."""

from __future__ import annotations

import math
import re

import pytest

import mgspec
from mgspec.ir import node
from tests.conftest import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def number(text: str) -> int:
    return int(text.replace(",", ""))


def table_rows() -> list[tuple[str, str, list[str], int, int | None]]:
    """(where, spec, overrides, weights, MACs or None) of every table row naming a spec file."""
    rows = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for i, line in enumerate(lines[:-1]):
            if not (line.startswith("|") and lines[i + 1].startswith("|--")):
                continue
            header = [c.strip() for c in line.strip("|").split("|")]
            if "spec" not in header or "weights" not in header:
                continue
            macs = next((header.index(h) for h in header if h.startswith("MACs")), None)
            for j in range(i + 2, len(lines)):
                if not lines[j].startswith("|"):
                    break
                cells = [c.strip() for c in lines[j].strip("|").split("|")]
                spec = re.search(r"`(specs/[\w/]+\.yaml)`", cells[header.index("spec")])
                if spec:
                    overrides = re.findall(r"`--set ([^`]+)`", cells[header.index("spec")])
                    weights = number(cells[header.index("weights")])
                    counted = number(cells[macs]) if macs is not None else None
                    rows.append((f"{doc.relative_to(ROOT)}:{j + 1}", spec.group(1), overrides, weights, counted))
    return rows


ROWS = table_rows()


def test_the_tables_of_specs_are_found():
    assert {where.split(":")[0] for where, *_ in ROWS} >= {"README.md", "docs/results.md"}
    assert len(ROWS) >= 12


@pytest.mark.parametrize(("where", "spec", "overrides", "weights", "macs"), ROWS, ids=[r[0] for r in ROWS])
def test_table_numbers_are_the_counts(where, spec, overrides, weights, macs):
    counts = mgspec.count_spec(ROOT / spec, overrides)
    assert weights == counts.total, where
    if macs is not None:
        assert macs == counts.macs, where


W_EXAMPLE = re.search(r"```yaml\n(name: w_example\n.*?)```", (ROOT / "docs" / "spec-language.md").read_text(), re.S)

#: (file, pattern whose groups are numbers, spec, overrides, what each group is)
PROSE = [
    ("docs/architectures.md", r"ResNet18: ([\d,]+) weights", "specs/resnet18_cifar10.yaml", [], ["total"]),
    ("docs/architectures.md", r"ResNet20 \(option A\): ([\d,]+)", "specs/resnet20_cifar10.yaml", [], ["total"]),
    ("docs/architectures.md", r"ν=2\):\s+([\d,]+);", "specs/mgnet_cifar10.yaml", [], ["total"]),
    ("docs/architectures.md", r"MgNet_A: ([\d,]+)", "specs/mgnet_a_cifar10.yaml", [], ["total"]),
    ("docs/architectures.md", r"instead of 9·c_l²\): ([\d,]+)", "specs/mgnet_grouped_cifar10.yaml", [], ["total"]),
    ("docs/architectures.md", r"Defaults \(cK = 64, gs = 4\):\s+([\d,]+)", "specs/mgiad_cifar10.yaml", [], ["total"]),
    ("README.md", r"count: ([\d,]+) weights", "specs/mgiad_cifar10.yaml", [], ["total"]),
    *[
        ("README.md", rf"^\| {w} \| ([\d,]+) \| ([\d,]+) \|$", spec, [f"width={w}"], ["total", None][::1 - 2 * i])
        for w in (1, 2, 4)
        for i, spec in enumerate(("specs/mgiad_cifar10.yaml", "specs/mgnet_cifar10.yaml"))
    ],
    ("docs/spec-language.md", r"gives ([\d,]+) weights and ([\d,]+) MACs", "w", [], ["total", "macs"]),
    ("docs/spec-language.md", r"`cycle: V` it is ([\d,]+) weights and\s+([\d,]+) MACs", "w", ["channel_grid.cycle=V"],
     ["total", "macs"]),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "pattern", "spec", "overrides", "fields"), PROSE, ids=[p[1][:30] for p in PROSE])
def test_prose_numbers_are_the_counts(doc, pattern, spec, overrides, fields):
    match = re.search(pattern, (ROOT / doc).read_text(), re.MULTILINE)
    assert match, f"{doc} no longer says {pattern!r}"
    counts = mgspec.count_spec(W_EXAMPLE.group(1) if spec == "w" else ROOT / spec, overrides)
    for group, field in zip(match.groups(), fields, strict=True):
        if field:
            assert number(group) == getattr(counts, field), (doc, pattern)


def test_w_cycle_visits_share_the_level_operators_as_documented():
    graph = mgspec.compile_graph(W_EXAMPLE.group(1))
    names = set(graph.graph["slots"])
    assert {s for s in names if s.endswith((".A", ".B"))} == {
        f"levels.l1.cycle{coarse}.{op}" for coarse in ("", ".coarse", ".coarse.coarse") for op in "AB"
    }
    second = {
        node(graph, n).slot
        for n in graph.nodes
        if node(graph, n).block.startswith("levels.l1.cycle.coarse2") and node(graph, n).slot in names
    }
    operators = {s for s in second if s.rsplit(".", 1)[1] in ("A", "B")}
    assert operators == {f"levels.l1.cycle.coarse{c}.{op}" for c in ("", ".coarse") for op in "AB"}
    own = second - operators
    assert own and all(s.startswith("levels.l1.cycle.coarse2") for s in own)  # norms and transfers


# -- the closed forms of docs/architectures.md ------------------------------------------------------


def transfers(spec) -> int:
    """T: the resolution-level R and Π."""
    grid, widths = spec.resolution_grid, [lv.channels for lv in spec.resolution_grid.levels]
    if grid.restriction == "avgpool":
        return 0
    pairs = list(zip(widths, widths[1:], strict=False))
    per = (lambda a, b: 18 * a * b) if grid.restriction == "dense" else (lambda a, b: 18 * math.lcm(a, b))
    return sum(per(a, b) for a, b in pairs) + (18 * widths[0] if grid.level1_transfers else 0)


def mgnet_formula(spec) -> int:
    grid, n = spec.resolution_grid, spec.classes
    c = [lv.channels for lv in grid.levels]
    total = 9 * spec.input.channels * c[0] + 2 * c[0] + n * (c[-1] + 1) + transfers(spec)
    for width, level in zip(c, grid.levels, strict=True):
        per_op = 9 * width * (grid.group_size or width)
        total += sum(1 if op in grid.share else level.steps for op in "AB") * per_op + 4 * level.steps * width
    return total


def mgiad_formula(spec) -> int:
    grid, cg, n = spec.resolution_grid, spec.channel_grid, spec.classes
    c = [lv.channels for lv in grid.levels]
    eta, gs = cg.pre_smoothing + cg.post_smoothing, cg.group_size
    total = 9 * spec.input.channels * c[0] + 2 * c[0] + n * (c[-1] + 1) + transfers(spec)
    for width in c:
        coarsest = cg.widths(width)[-1]
        total += (18 * gs + 4 * eta + 7) * 2 * (width - coarsest) + 18 * coarsest**2 + (4 * eta + 4) * coarsest
    return total


ALL = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "specs" / "examples").glob("*.yaml"))


def plain(spec) -> bool:
    """The formulas' assumptions: default layers and stem, no sharing across levels."""
    grid = spec.resolution_grid
    return (
        spec.layers == type(spec.layers)()
        and spec.stem == type(spec.stem)()
        and spec.width == 1
        and not getattr(grid, "share_across", [])
        and all("channel_grid" not in lv.model_fields_set for lv in grid.levels)
    )


def test_architectures_formulas_give_the_counts():
    checked = {"mgnet": [], "mgiad": []}
    for path in ALL:
        spec = mgspec.load_spec(path)[0]
        if not plain(spec) or spec.family not in ("mgnet", "mgnet_grouped", "mgiad"):
            continue
        cg = spec.channel_grid
        if spec.family == "mgiad":
            if (cg.coarsening, cg.transfers, cg.cycle, cg.share, cg.norms_per_step) != (
                2,
                "pairwise",
                "V",
                ["A", "B"],
                None,
            ):
                continue
            if spec.resolution_grid.group_size or any(lv.steps != 1 for lv in spec.resolution_grid.levels):
                continue
            assert mgiad_formula(spec) == mgspec.count_spec(path).total, path.name
            checked["mgiad"].append(path.stem)
        else:
            assert mgnet_formula(spec) == mgspec.count_spec(path).total, path.name
            checked["mgnet"].append(path.stem)
    assert {"mgnet_cifar10", "mgnet_grouped_cifar10", "mgnet_avgpool", "mgnet_dense_restriction_decreasing"} <= set(
        checked["mgnet"]
    )
    assert {"mgiad_cifar10", "mgiad_small_cifar10"} <= set(checked["mgiad"])


def test_ir_doc_quotes_what_each_pass_removes():
    """docs/ir.md's MACs before and after the passes, and CSE's share, for the shipped specs."""
    text = " ".join((ROOT / "docs" / "ir.md").read_text().split())

    def passes(spec: str, overrides: tuple = ()) -> tuple[int, int, int]:
        fold, cse = mgspec.count_spec(ROOT / "specs" / f"{spec}.yaml", list(overrides)).passes
        return fold["macs_before"], fold["macs_after"], cse["macs_after"]

    def millions(value: int) -> str:
        return f"{value / 1e6:.1f}M"

    def cse_share(macs: tuple[int, int, int]) -> str:
        return f"{100 * (macs[1] - macs[2]) / macs[1]:.1f}%"

    mgnet, mgiad = passes("mgnet_cifar10"), passes("mgiad_cifar10")
    assert (
        f"MgNet_{{A,B}} {millions(mgnet[0])} literal, {millions(mgnet[1])} after zero folding, "
        f"{millions(mgnet[2])} after CSE (CSE removes {millions(mgnet[1] - mgnet[2])}, {cse_share(mgnet)})"
    ) in text
    assert f"MgNet small {cse_share(passes('mgnet_small_cifar10'))}" in text
    assert f"MGiaD cK=64/gs=4 {' → '.join(map(millions, mgiad))} (CSE {millions(mgiad[1] - mgiad[2])}" in text
    assert f"MGiaD cK=16/gs=4 CSE {cse_share(passes('mgiad_cifar10', ('channel_grid.coarsest=16',)))}" in text
    assert f"MGIC {cse_share(passes('mgic_cifar10'))}" in text
    before, folded, merged = map(millions, mgiad)
    assert f"MACs {before} -> {folded} after fold zeros -> {merged} after CSE" in text
