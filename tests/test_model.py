"""The runtime backend: forward/backward on every shipped spec, sharing, stable state_dict keys."""

from __future__ import annotations

import pytest
import torch

import mgspec
from tests.conftest import ROOT, SPECS, spec_id

S = ROOT / "specs"


HEAVY = {"mgic_cifar10", "mgiad_cifar10"}  # grouped-conv backward is slow on CPU
CASES = [
    (p, cin, size)
    for p in SPECS
    for cin, size in [(3, 32), (1, 28), (1, 32), (3, 28)]
    if p.stem not in HEAVY or (cin, size) in [(3, 32), (1, 28)]
]


@pytest.mark.parametrize("path,cin,size", CASES, ids=lambda v: spec_id(v) if hasattr(v, "stem") else str(v))
def test_forward_backward(path, cin, size):
    """Every spec runs forward and backward on 32x32 and 28x28 inputs with 1 and 3 channels."""
    model = mgspec.create_model(path, [f"input.channels={cin}", f"input.size={size}"])
    x = torch.randn(2, cin, size, size)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.logsumexp(1).sum().backward()
    for name, p in model.named_parameters():
        if not any(name.startswith(unused) for unused in ("levels.l1.R.", "levels.l1.Pi.")):
            assert p.grad is not None, f"{name} got no gradient"


def test_sharing_is_one_module():
    model = mgspec.create_model(S / "mgnet_cifar10.yaml")
    keys = set(model.state_dict())
    assert "levels.l2.A.weight" in keys and "levels.l2.B.weight" in keys
    assert not any(".steps.0.A." in k for k in keys)
    model_a = mgspec.create_model(S / "mgnet_a_cifar10.yaml")
    keys_a = set(model_a.state_dict())
    assert "levels.l2.A.weight" in keys_a
    assert {"levels.l2.steps.0.B.weight", "levels.l2.steps.1.B.weight"} <= keys_a


def test_mgiad_layout_follows_the_channel_hierarchy():
    keys = set(mgspec.create_model(S / "mgiad_cifar10.yaml").state_dict())
    # l3 has channel levels 256 -> 128 -> 64: two coarse corrections then the coarse solve.
    for key in (
        "levels.l3.cycle.A.weight",
        "levels.l3.cycle.coarse.A.weight",
        "levels.l3.cycle.coarse.coarse.solve.bn1.weight",
        "levels.l3.cycle.R.weight",
        "levels.l3.cycle.bn_P.running_mean",
        "levels.l3.Pi.weight",
    ):
        assert key in keys
    assert not any(k.startswith("levels.l3.cycle.coarse.coarse.coarse") for k in keys)
    assert not any(k.startswith("levels.l1.cycle.coarse") for k in keys)  # 64 channels: one level


def test_editing_one_level_keeps_other_keys(tmp_path):
    base = set(mgspec.create_model(S / "mgnet_small_cifar10.yaml").state_dict())
    edited = set(
        mgspec.create_model(S / "mgnet_small_cifar10.yaml", ["resolution_grid.levels[1].steps=5"]).state_dict()
    )
    for level in ("l1", "l3"):
        assert {k for k in base if f".{level}." in k} == {k for k in edited if f".{level}." in k}
    named = set(
        mgspec.create_model(S / "mgnet_small_cifar10.yaml", ["resolution_grid.levels[0].name=fine"]).state_dict()
    )
    assert any(k.startswith("levels.fine.") for k in named)
    assert {k for k in base if ".l3." in k} == {k for k in named if ".l3." in k}


def test_first_step_skips_a_of_zero():
    """u = 0 on level 1, so A(u) is never applied there before the first update."""
    graph = mgspec.compile_graph(S / "mgnet_cifar10.yaml")
    first = [n for n, d in graph.nodes(data=True) if d["node"].slot == "levels.l1.A"]
    # A_1 is applied in step 2 and in the FAS restriction, not in step 1.
    assert len(first) == 2


def test_eval_is_deterministic_and_batch_independent():
    model = mgspec.create_model(S / "mgiad_cifar10.yaml").eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(full, single, rtol=1e-4, atol=1e-5)


def test_a_built_model_pickles(tmp_path):
    """torch.save(model) works: the runtime backend's kernels are module-level functions."""
    model = mgspec.create_model(S / "mgiad_cifar10.yaml", ["input.size=8", "channel_grid.coarsest=16"]).eval()
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_a_model_too_large_for_memory_is_refused_before_allocating():
    import os

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    counts = mgspec.count_spec(S / "mgnet_cifar10.yaml", ["width=64"])  # 11 billion weights, counted analytically
    assert 4 * counts.total > memory
    with pytest.raises(mgspec.SpecError, match="more than this machine's"):
        mgspec.create_model(S / "mgnet_cifar10.yaml", ["width=64"])
