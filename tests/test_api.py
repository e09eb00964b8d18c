"""The Python API: every spec form and override form, and the public source generator."""

from __future__ import annotations

import runpy

import pytest
import yaml

import mgspec
from tests.conftest import ROOT

SPEC = ROOT / "specs" / "mgiad_cifar10.yaml"


def spec_forms():
    text = SPEC.read_text()
    return {
        "path": SPEC,
        "str path": str(SPEC),
        "yaml text": text,
        "dict": yaml.safe_load(text),
        "Spec": mgspec.load_spec(SPEC)[0],
        "Source": mgspec.load_source(SPEC),
    }


@pytest.mark.parametrize("form", list(spec_forms()))
def test_count_spec_accepts_every_spec_form(form):
    spec = spec_forms()[form]
    assert mgspec.count_spec(spec).total == 393_034
    wide = mgspec.count_spec(SPEC, ["width=2", "channel_grid.group_size=8"]).total
    assert mgspec.count_spec(spec, {"width": 2, "channel_grid.group_size": 8}).total == wide
    assert mgspec.count_spec(spec, ["width=2", "channel_grid.group_size=8"]).total == wide


def test_create_model_from_a_dict_with_mapping_overrides():
    data = yaml.safe_load((ROOT / "specs" / "mgnet_cifar10.yaml").read_text())
    model = mgspec.create_model(data, {"resolution_grid.share": ["A"], "input.size": 16})
    assert sum(p.numel() for p in model.parameters()) == 4_114_634


def test_a_single_override_string_is_refused_with_a_hint():
    with pytest.raises(TypeError, match=r"overrides=\['width=2'\]"):
        mgspec.create_model(SPEC, "width=2")
    with pytest.raises(TypeError, match="not the string"):
        mgspec.count_spec(SPEC, "width=2")


def test_yaml_text_errors_name_the_line_and_field():
    text = SPEC.read_text().replace("classes: 10", "clases: 10")
    with pytest.raises(mgspec.SpecError, match=r"<string>:\d+:\d+: clases"):
        mgspec.count_spec(text)


def test_generate_source_is_what_compile_writes():
    text = mgspec.generate_source(ROOT / "specs" / "resnet20_cifar10.yaml")
    assert text == (ROOT / "generated" / "resnet20_cifar10.py").read_text()
    namespace: dict = {}
    exec(compile(mgspec.generate_source(SPEC.read_text(), {"input.size": 16}), "m.py", "exec"), namespace)
    model = namespace["create_model"]()
    assert sum(p.numel() for p in model.parameters()) == 393_034
    assert "generate_source" in mgspec.__all__


def test_api_reference_is_fresh():
    script = runpy.run_path(str(ROOT / "docs" / "api.py"), run_name="api")
    assert script["main"](["--check"]) == 0, "docs/api.md is stale: run python docs/api.py"
    text = (ROOT / "docs" / "api.md").read_text()
    for name in ("create_model", "count_spec", "generate_source", "load_spec"):
        assert f"### `mgspec.{name}`" in text


def test_a_new_mgnet_or_mgiad_spec_has_no_unused_weights():
    for extra in ("", "channel_grid: {group_size: 4, coarsest: 8}\n"):
        text = (
            "name: fresh\nclasses: 10\nresolution_grid:\n  block: mgnet\n"
            "  levels: [{channels: 16, steps: 1}, {channels: 32, steps: 1}]\n" + extra
        )
        counts = mgspec.count_spec(text)
        assert counts.unused == 0 and counts.unused_slots == []
        model = mgspec.create_model(text)
        assert sum(p.numel() for p in model.parameters()) == counts.total
        assert mgspec.count_spec(text, {"resolution_grid.level1_transfers": True}).unused == 18 * 16


def test_shipped_paper_specs_keep_level1_transfers_explicit():
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data["resolution_grid"]["block"] == "mgnet":
            assert data["resolution_grid"].get("level1_transfers") is True, path.name
            assert mgspec.count_spec(path).unused > 0, path.name
