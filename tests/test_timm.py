"""timm integration: built-in models by timm name with their pretrained_cfg (skipped without timm)."""

from __future__ import annotations

import pytest

import mgspec

timm = pytest.importorskip("timm", reason="timm (and torchvision) are not installed")
import mgspec.timm  # noqa: E402, F401  registers the models


def test_every_built_in_model_is_a_timm_model():
    names = timm.list_models("mgspec_*")
    assert names and sorted(names) == sorted(f"mgspec_{n}" for n in mgspec.list_models())
    assert "mgspec_mgiad_cifar10" in timm.list_models("*mgiad*")


def test_timm_create_model_gives_the_runtime_model_with_its_cfg():
    model = timm.create_model("mgspec_mgiad_cifar10")
    assert sum(p.numel() for p in model.parameters()) == 393_034
    cfg = model.pretrained_cfg
    assert tuple(cfg["input_size"]) == (3, 32, 32) and cfg["num_classes"] == 10
    assert tuple(cfg["mean"]) == (0.4914, 0.4822, 0.4465) and tuple(cfg["std"]) == (0.2470, 0.2435, 0.2616)
    data = timm.data.resolve_data_config({}, model=model)
    assert tuple(data["input_size"]) == (3, 32, 32) and tuple(data["mean"]) == (0.4914, 0.4822, 0.4465)
    wide = timm.create_model("mgspec_mgiad_cifar10", num_classes=100, overrides={"width": 2})
    assert wide.pretrained_cfg["num_classes"] == 100
    assert (
        sum(p.numel() for p in wide.parameters())
        == mgspec.count_spec("mgiad_cifar10", ["width=2", "classes=100"]).total
    )
    rectangular = timm.create_model("mgspec_mgnet_rectangular")
    assert tuple(rectangular.pretrained_cfg["input_size"]) == (3, 64, 32)
    with pytest.raises((ValueError, RuntimeError), match="no pretrained weights"):
        timm.create_model("mgspec_mgiad_cifar10", pretrained=True)
