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


#: The keywords of JSON Schema (2020-12) and its annotations: an editor validating with a
#: documented schema ignores any other key, so a constraint spelled otherwise checks nothing.
KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "$comment", "title", "description", "default", "examples", "type", "enum",
    "const", "anyOf", "oneOf", "allOf", "not", "properties", "additionalProperties", "required", "items",
    "prefixItems", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "propertyNames",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern",
    "format", "discriminator", "patternProperties", "deprecated", "readOnly", "writeOnly",
}  # fmt: skip


def _unknown_keywords(schema, where: str = "#") -> list[str]:
    found = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("properties", "$defs", "patternProperties"):  # maps of names to schemas
                for name, sub in value.items():
                    found += _unknown_keywords(sub, f"{where}/{key}/{name}")
            elif key not in KEYWORDS:
                found.append(f"{where}/{key}")
            elif key not in ("enum", "const", "default", "examples", "required", "discriminator"):
                found += _unknown_keywords(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            found += _unknown_keywords(sub, f"{where}/{i}")
    return found


@pytest.mark.parametrize("name", ["study.schema.json", "spec.schema.json"])
def test_the_documented_schemas_use_only_json_schema_keywords(name):
    """A range's ``step: 0`` must be refused by an editor too: ``exclusiveMinimum``, not pydantic's ``gt``."""
    import json

    schema = json.loads((Path(__file__).resolve().parent.parent / "docs" / name).read_text())
    assert _unknown_keywords(schema) == []
