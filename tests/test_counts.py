"""Analytic counts: the reference numbers of architectures.md, torch agreement, MACs, speed."""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import mgspec
from tests.conftest import ROOT, SPECS, spec_id
from tests.strategies import spec_data, to_source

S = ROOT / "specs"

# Every reference count of architectures.md, typed in from the document.
REFERENCE = [
    ("resnet18_cifar10", [], 11_173_962),
    ("resnet18_cifar10", ["classes=100"], 11_220_132),
    ("resnet20_cifar10", [], 269_722),
    ("mgnet_cifar10", [], 2_750_666),
    ("mgnet_cifar10", ["classes=100"], 2_773_796),
    ("mgnet_a_cifar10", [], 4_114_634),
    ("mgnet_small_cifar10", [], 101_242),
    ("mgnet_small_cifar10", ["resolution_grid.share=[A]"], 198_010),
    ("mgiad_cifar10", [], 393_034),
] + [
    ("mgiad_cifar10", [f"channel_grid.coarsest={ck}", f"channel_grid.group_size={gs}"], n)
    for ck, gs, n in [
        (4, 4, 138_154),
        (8, 4, 139_018),
        (16, 4, 147_658),
        (32, 4, 192_586),
        (64, 4, 393_034),
        (8, 8, 235_786),
        (16, 8, 239_818),
        (32, 8, 275_530),
        (64, 8, 457_546),
    ]
]


@pytest.mark.parametrize("name,overrides,expected", REFERENCE, ids=lambda v: str(v))
def test_reference_counts(name, overrides, expected):
    path = S / f"{name}.yaml"
    counts = mgspec.count_spec(path, overrides)
    model = mgspec.create_model(path, overrides)
    assert counts.total == expected
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.slow
def test_mgiad_closed_form():
    """architectures.md's closed form for MGiaD, over a grid of configurations."""
    for ck in (4, 8, 16, 32, 64):
        for gs in (1, 2, 4, 8):
            for post in (0, 1, 3):
                for width, classes, cin in ((1, 10, 3), (2, 100, 1)):
                    overrides = [
                        f"channel_grid.coarsest={ck}",
                        f"channel_grid.group_size={gs}",
                        f"channel_grid.post_smoothing={post}",
                        f"width={width}",
                        f"classes={classes}",
                        f"input.channels={cin}",
                    ]
                    eta = 1 + post
                    cs = [width * c for c in (64, 128, 256, 256)]
                    total = 9 * cin * cs[0] + 2 * cs[0] + classes * (cs[-1] + 1)
                    for c in cs:
                        C = c
                        while C % 2 == 0 and C // 2 >= ck:
                            C //= 2
                        total += 18 * c + (18 * gs + 4 * eta + 7) * 2 * (c - C) + 18 * C * C + (4 * eta + 4) * C
                    assert mgspec.count_spec(S / "mgiad_cifar10.yaml", overrides).total == total, overrides


def test_level1_quirk_is_visible_and_optional():
    counts = mgspec.count_spec(S / "mgnet_cifar10.yaml")
    assert counts.unused == 18 * 64
    assert counts.unused_slots == ["levels.l1.R", "levels.l1.Pi"]
    without = mgspec.count_spec(S / "mgnet_cifar10.yaml", ["resolution_grid.level1_transfers=false"])
    assert counts.total - without.total == 18 * 64
    assert without.unused == 0


def _torch_macs(model, cin, size):
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, cin, *((size, size) if isinstance(size, int) else size)))
    flops = counter.get_flop_counts()["Global"]
    # mgspec's custom ops (channel transfers, the grouped 3x3 kernel) count as the convolutions they compute
    conv = sum(
        v for k, v in flops.items() if any(w in str(k) for w in ("convolution", "channel_transfer", "grouped_conv"))
    )
    linear = sum(v for k, v in flops.items() if any(w in str(k) for w in ("addmm", "mm")))
    assert sum(flops.values()) == conv + linear, f"unexpected counted ops: {flops}"
    return (conv + linear) // 2


@pytest.mark.parametrize("optimized", [True, False], ids=["optimized", "literal"])
@pytest.mark.parametrize("path", SPECS, ids=spec_id)
def test_shipped_spec_counts_match_torch(path, optimized):
    counts = mgspec.count_spec(path, optimized=optimized)
    model = mgspec.create_model(path, optimized=optimized)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.macs == _torch_macs(model, 3, 32)
    assert sum(counts.by_level.values()) == counts.total == sum(counts.by_operator.values())
    assert sum(counts.macs_by_level.values()) == counts.macs == sum(counts.macs_by_operator.values())


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_data(), st.booleans())
def test_generated_spec_counts_match_torch(data, optimized):
    graph = mgspec.compile_graph(to_source(data), optimized=optimized)
    counts = mgspec.count(graph)
    model = mgspec.build_model(graph)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.macs == _torch_macs(model, data["input"]["channels"], data["input"]["size"])


def test_input_size_changes_macs_not_weights():
    a = mgspec.count_spec(S / "mgiad_cifar10.yaml")
    b = mgspec.count_spec(S / "mgiad_cifar10.yaml", input_size=64)
    assert a.total == b.total
    # Every conv runs on 4x the pixels; only the classifier is size-independent.
    fc = a.macs_by_operator["fc"]
    assert b.macs - fc == 4 * (a.macs - fc)


def test_counting_never_builds_tensors_and_is_fast():
    start = time.perf_counter()
    counts = mgspec.count_spec(S / "mgnet_cifar10.yaml", ["width=64"])
    elapsed = time.perf_counter() - start
    # 64x the channels: the 18 c^2 A/B terms grow 4096x.
    assert counts.total > 11_000_000_000
    assert elapsed < 0.5
