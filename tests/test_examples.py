"""specs/examples/: one spec per design-space option, each exact and each equal across backends."""

from __future__ import annotations

import pytest
import torch

import mgspec
from tests.conftest import ROOT
from tests.test_codegen import assert_equivalent
from tests.test_counts import _torch_macs

EXAMPLES = sorted((ROOT / "specs" / "examples").glob("*.yaml"))


def spec(path):
    return mgspec.load_spec(path)[0]


def test_every_option_has_an_example():
    specs = [spec(p) for p in EXAMPLES]

    def some(predicate) -> bool:
        return any(predicate(s) for s in specs)

    grids = [s.channel_grid for s in specs if s.channel_grid is not None]
    options = {
        "layers.norm: group": some(lambda s: s.layers.norm == "group"),
        "layers.norm: none": some(lambda s: s.layers.norm == "none"),
        "layers.activation: gelu": some(lambda s: s.layers.activation == "gelu"),
        "layers.activation: silu": some(lambda s: s.layers.activation == "silu"),
        "layers.kernel: 5": some(lambda s: s.layers.kernel == 5),
        "layers.norms_per_step: 1": some(lambda s: s.layers.norms_per_step == 1),
        "channel_grid.norms_per_step": any(g.norms_per_step for g in grids),
        "channel_grid.share: [A]": any(g.share == ["A"] for g in grids),
        "channel_grid.cycle: W": any(g.cycle == "W" for g in grids),
        "channel_grid.transfers: dense": any(g.transfers == "dense" for g in grids),
        "channel_grid.coarsening: 4": any(g.coarsening == 4 for g in grids),
        "several cycles per level": some(
            lambda s: s.channel_grid and any(lv.steps > 1 for lv in s.resolution_grid.levels)
        ),
        "resolution_grid.restriction: avgpool": some(
            lambda s: getattr(s.resolution_grid, "restriction", "") == "avgpool"
        ),
        "resolution_grid.restriction: dense": some(lambda s: getattr(s.resolution_grid, "restriction", "") == "dense"),
        "resolution_grid.share_across: MgNet": some(
            lambda s: not s.channel_grid and getattr(s.resolution_grid, "share_across", [])
        ),
        "resolution_grid.share_across: MGiaD": some(
            lambda s: s.channel_grid and getattr(s.resolution_grid, "share_across", [])
        ),
        "grouped A/B with a channel grid": some(
            lambda s: s.channel_grid and getattr(s.resolution_grid, "group_size", None)
        ),
        "decreasing widths": some(
            lambda s: [lv.channels for lv in s.resolution_grid.levels][-1] < s.resolution_grid.levels[0].channels
        ),
        "rectangular input": some(lambda s: s.input.shape[0] != s.input.shape[1]),
        "stem stride and max-pool": some(lambda s: s.stem.stride > 1 and s.stem.maxpool),
    }
    assert [name for name, covered in options.items() if not covered] == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_counts_are_exact(path):
    counts = mgspec.count_spec(path)
    model = mgspec.create_model(path)
    assert counts.total == sum(p.numel() for p in model.parameters())
    s = spec(path)
    if s.input.shape[0] * s.input.shape[1] <= 64 * 64:  # torch's flop counter on a real forward pass
        assert counts.macs == _torch_macs(model, s.input.channels, list(s.input.shape))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_generated_equals_runtime(path, tmp_path):
    s = spec(path)
    size = [16, 8] if s.input.shape[0] != s.input.shape[1] else (32 if s.stem.maxpool else 16)
    graph = mgspec.compile_graph(path, [f"input.size={size}".replace(" ", "")])
    torch.manual_seed(0)
    assert_equivalent(graph, tmp_path, s.input.channels, size)


REFUSED = [
    ("resnet20_cifar10", ["layers.norm_groups=4"], "layers.norm_groups: norm_groups only applies with norm: group"),
    ("resnet20_cifar10", ["layers.norms_per_step=1"], "layers.norms_per_step: a ResNet has no smoothing steps"),
    ("mgnet_a_cifar10", ["resolution_grid.share_across=[B]"], "which resolution_grid.share does not share"),
    ("mgiad_cifar10", ["resolution_grid.share_across=[B]", "channel_grid.share=[A]"], "which channel_grid.share"),
    ("mgnet_small_cifar10", ["resolution_grid.share_across=[A]"], "no two have one"),
    ("mgiad_cifar10", ["resolution_grid.share=[A]"], "resolution_grid.share: with a channel grid"),
    (
        "mgnet_cifar10",
        [
            "resolution_grid.restriction=avgpool",
            "resolution_grid.level1_transfers=false",
            "resolution_grid.levels[1].channels=96",
        ],
        "repeats",
    ),
    (
        "mgnet_cifar10",
        ["resolution_grid.restriction=avgpool"],
        "resolution_grid.level1_transfers: level1_transfers creates R and Pi, which average-pool restriction",
    ),
    ("mgnet_a_cifar10", ["layers.norm=none", "layers.norms_per_step=1"], "layers.norms_per_step: norms_per_step only"),
    ("mgiad_cifar10", ["layers.norm=none", "channel_grid.norms_per_step=1"], "channel_grid.norms_per_step: norms_per"),
    ("mgiad_cifar10", ["layers.norm=group", "layers.norm_groups=3"], "layers.norm_groups: GroupNorm with 3 groups"),
]


@pytest.mark.parametrize("name,overrides,message", REFUSED, ids=[" ".join(o) for _, o, _ in REFUSED])
def test_options_a_network_cannot_use_are_refused_not_ignored(name, overrides, message):
    with pytest.raises(mgspec.SpecError, match=message.replace("[", r"\[").replace("(", r"\(")):
        mgspec.count_spec(ROOT / "specs" / f"{name}.yaml", overrides)


@pytest.mark.parametrize("escaped", ["\\t", "\\n", "\\r"])
def test_descriptions_refuse_control_characters_with_a_location(escaped):
    text = (
        f'name: n\nclasses: 10\ndescription: "one{escaped}two"\n'
        "resolution_grid: {block: mgnet, levels: [{channels: 8, steps: 1}]}\n"
    )
    with pytest.raises(mgspec.SpecError, match=r"is not allowed") as err:
        mgspec.load_spec(text)
    assert "description" in str(err.value) and ":3:" in str(err.value)
