"""Studies built in memory: validated by the study model, written so ``study run`` workers reload them."""

from pathlib import Path

import pytest

from mgspec.errors import SpecError
from mgspec.study import inline, load_study

SPEC = (Path(__file__).resolve().parent.parent / "specs" / "mgiad_cifar10.yaml").resolve()


def test_build_and_write_round_trip(tmp_path):
    data = {"name": "sweep", "spec": str(SPEC), "dataset": "cifar10", "seeds": 2, "grid": {"width": [1, 2]}}
    study = inline.build(data, "--grid")
    assert study.spec_path == SPEC
    loaded = load_study(inline.write(study, tmp_path))
    assert loaded.model == study.model
    assert loaded.spec_path == SPEC


def test_bad_mapping_is_located_at_origin():
    data = {"name": "sweep", "spec": str(SPEC), "dataset": "cifar10", "train": {"lrr": 1}, "grid": {"width": [1]}}
    with pytest.raises(SpecError) as err:
        inline.build(data, "--grid")
    assert err.value.location.source == "--grid"
    assert "did you mean 'lr'" in str(err.value)


def test_the_documented_json_schema_is_the_study_models():
    import json

    from mgspec.study.model import StudyFile

    documented = (Path(__file__).resolve().parent.parent / "docs" / "study.schema.json").read_text()
    assert json.loads(documented) == StudyFile.model_json_schema(), "regenerate docs/study.schema.json"
