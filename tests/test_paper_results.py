"""`mgspec paper --results DIR`: our accuracy beside the paper's, from a one-point study of a row."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mgspec import paper
from mgspec.cli.app import app
from mgspec.study import inline
from tests.synthetic import write_idx

runner = CliRunner()
ROW = "IV/cK=16,gs=8"


@pytest.mark.slow
def test_results_fill_the_measured_row_only(tmp_path):
    data = write_idx(tmp_path / "fashion", train=16, test=8)
    train = {"epochs": 1, "batch_size": 8, "max_batches": 1}
    study = inline.build(inline.from_row(paper.find(ROW), seeds=2, train=train), "reproduce")
    out = tmp_path / "study"
    path = inline.write(study, out)
    ran = runner.invoke(app, ["study", "run", str(path), "--out", str(out), "--data-dir", str(data)])
    assert ran.exit_code == 0, ran.output

    shown = runner.invoke(app, ["paper", "-t", "IV", "-f", "json", "--results", str(out)])
    assert shown.exit_code == 0, shown.output
    records = {r["id"]: r for r in json.loads(shown.stdout)}
    ours = records[ROW]
    assert ours["ours_seeds"] == 2 and 0 <= ours["ours_test_acc"] <= 100 and ours["ours_test_std"] >= 0
    others = [r for i, r in records.items() if i != ROW]
    assert others and all(r["ours_test_acc"] is None and r["ours_seeds"] is None for r in others)

    # A smoke test is not the paper's number measured again: it says what it trained otherwise.
    assert ours["ours_recipe_differs"] == {"epochs": [1, 100], "batch_size": [8, 128], "max_batches": [1, None]}
    assert all(r["ours_recipe_differs"] is None for i, r in records.items() if i != ROW)

    table = runner.invoke(app, ["paper", "-t", "IV", "--results", str(out)])
    assert table.exit_code == 0, table.output
    assert f"{ours['ours_test_acc']:.2f} ({ours['ours_test_std']:.2f}, 2)*" in table.stdout
    assert (
        f"{ROW}: * ours trained with another recipe: epochs 1 (paper 100), batch_size 8 (paper 128), "
        "max_batches 1 (paper none)"
    ) in table.stdout


def test_results_of_a_directory_without_a_study_is_located(tmp_path):
    result = runner.invoke(app, ["paper", "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a study directory" in result.stderr and str(tmp_path) in result.stderr
    assert "Traceback" not in result.output


def test_without_results_the_records_are_unchanged():
    record = json.loads(runner.invoke(app, ["paper", "-t", "IV", "-f", "json"]).stdout)[0]
    assert "ours_test_acc" not in record
