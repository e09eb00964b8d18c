"""Built-in models by name: list_models, name resolution in the API and the CLI, close-name hints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mgspec
from mgspec import registry
from tests.conftest import ROOT

PAPER = sorted(p.stem for p in (ROOT / "mgspec" / "specs").glob("*.yaml"))
EXAMPLES = sorted(p.stem for p in (ROOT / "mgspec" / "specs" / "examples").glob("*.yaml"))


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mgspec", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_list_models_names_every_shipped_spec_and_filters_by_glob():
    assert len(PAPER) == 9 and len(EXAMPLES) == 11
    assert mgspec.list_models() == sorted(PAPER + EXAMPLES)
    assert mgspec.list_models("*mgiad*") == sorted(n for n in PAPER + EXAMPLES if "mgiad" in n)
    assert mgspec.list_models("resnet*") == ["resnet18_cifar10", "resnet20_cifar10"]
    assert mgspec.list_models("nothing*") == []
    assert registry.is_example("mgnet_rectangular") and not registry.is_example("mgiad_cifar10")


def test_the_top_level_specs_folder_is_the_package_one():
    assert (ROOT / "specs").resolve() == registry.SPECS
    assert (ROOT / "specs" / "examples" / "mgnet_rectangular.yaml").is_file()


def test_a_name_works_wherever_a_spec_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no specs/ here
    assert mgspec.count_spec("mgiad_cifar10").total == 393_034
    assert mgspec.count_spec(Path("mgiad_cifar10"), {"width": 2}).total == 532_618
    assert mgspec.load_spec("mgnet_rectangular")[0].name == "mgnet_rectangular"
    model = mgspec.create_model("mgiad_small_cifar10")
    assert sum(p.numel() for p in model.parameters()) == 28_666
    assert "class " in mgspec.generate_source("resnet20_cifar10")


def test_an_existing_file_wins_over_a_built_in_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "specs" / "mgnet_small_cifar10.yaml").read_text()
    (tmp_path / "mgiad_cifar10").write_text(text)
    assert mgspec.count_spec("mgiad_cifar10").name == "mgnet_small_cifar10"


def test_an_unknown_name_is_located_and_suggests_close_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(mgspec.SpecError) as caught:
        mgspec.count_spec("mgiad_cifr10")
    error = caught.value
    assert error.location.source == "mgiad_cifr10"
    assert "no such spec file or built-in model" in str(error)
    assert "did you mean mgiad_cifar10" in error.hint
    # A path that does not exist keeps its own error (no name lookup).
    with pytest.raises(mgspec.SpecError, match="no such spec file"):
        mgspec.count_spec("missing/mgiad_cifar10.yaml")


@pytest.mark.slow
def test_cli_takes_names_from_any_directory(tmp_path):
    counted = cli("count", "mgiad_cifar10", "-f", "json", cwd=tmp_path)
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["total"] == 393_034
    listed = cli("list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for name in PAPER + EXAMPLES:
        assert f"│ {name} " in listed.stdout
    only = cli("list", "resnet*", cwd=tmp_path)
    assert "resnet20_cifar10" in only.stdout and "mgiad_cifar10" not in only.stdout
    compiled = cli("compile", "mgnet_small_cifar10", "-o", "out", cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    header = (tmp_path / "out" / "mgnet_small_cifar10.py").read_text().splitlines()[:2]
    assert "from mgnet_small_cifar10 (spec sha256" in header[0]
    assert "`mgspec compile mgnet_small_cifar10 -o <dir>`" in header[1]
    unknown = cli("count", "mgiad_cifr10", cwd=tmp_path)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "error: mgiad_cifr10: no such spec file or built-in model" in unknown.stderr
    assert "did you mean mgiad_cifar10" in unknown.stderr


def test_generated_files_follow_the_umask(tmp_path):
    from mgspec import codegen

    old = os.umask(0o027)
    try:
        codegen.write(tmp_path / "a.py", "x = 1\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.py").stat().st_mode & 0o777 == 0o640
