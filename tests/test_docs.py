"""The spec-language reference documents every field of the schema, and nothing else."""

from __future__ import annotations

import re
import typing

import pytest
from pydantic import BaseModel

from mgspec.schema import ChannelGrid, MgNetGrid, ResNetGrid, Spec
from tests.conftest import ROOT


def field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.add(path)
        annotation = info.annotation
        if model is Spec and name == "resolution_grid":
            for grid in (ResNetGrid, MgNetGrid):
                paths |= field_paths(grid, f"{path}.")
            continue
        if name == "levels":
            from mgspec.schema import Level

            paths |= field_paths(Level, f"{path}[].")
            continue
        for arg in (annotation, *typing.get_args(annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg is not ChannelGrid:
                paths |= field_paths(arg, f"{path}.")
        if name == "channel_grid" and not prefix:
            paths |= field_paths(ChannelGrid, "channel_grid.")
    return paths


def test_every_field_is_documented_and_no_stale_ones():
    text = (ROOT / "docs" / "spec-language.md").read_text()
    # Rows of the four-column field tables: | `path` | type | default | meaning |
    documented = set(re.findall(r"^\| `([a-z0-9_\[\].]+)` \|(?:[^|\n]*\|){3}\s*$", text, flags=re.MULTILINE))
    assert documented == field_paths(Spec)


def test_ir_doc_lists_the_op_set():
    from mgspec.ir import OPS

    text = (ROOT / "docs" / "ir.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \| \d", text, flags=re.MULTILINE))
    assert documented == set(OPS)


@pytest.mark.slow
def test_reproduction_page_is_fresh():
    """docs/reproduction.md is what docs/reproduction.py generates (and every published count matches)."""
    import runpy

    script = runpy.run_path(str(ROOT / "docs" / "reproduction.py"), run_name="reproduction")
    assert script["main"](["--check"]) == 0, "docs/reproduction.md is stale: run python docs/reproduction.py"


def test_reproduction_closed_form_is_independent_of_mgspec():
    """The script's closed form reproduces the published MGiaD numbers on its own."""
    import runpy

    closed_form = runpy.run_path(str(ROOT / "docs" / "reproduction.py"), run_name="reproduction")["closed_form"]
    assert closed_form(ck=64, gs=4) == 393_034
    assert closed_form(ck=16, gs=8) == 239_818
    assert closed_form(ck=4, gs=4) == 138_154
