"""`mgspec sweep --train` and `mgspec reproduce` are studies: parallel, failure tolerant, re-runnable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import mgspec
from mgspec.errors import SpecError
from mgspec.study import inline, load_study, points
from tests import synthetic
from tests.conftest import run_mgspec

pytest.importorskip("optuna", reason="sweep --train and reproduce run studies: pip install 'mgspec[study]'")

ROOT = Path(__file__).resolve().parents[1]


def _stamps(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(out.glob("trials/*/checkpoint.pt"))}


@pytest.mark.slow
def test_a_2x2_sweep_with_a_diverging_point_finishes_the_others_and_a_rerun_trains_nothing(tiny_dir):
    sweep = ["sweep", "tiny.yaml", "--grid", "channel_grid.coarsest=2,4", "--grid", "train.lr=0.05,1e6", "--train"]
    sweep += ["-d", "cifar10", "--data-dir", "data", "--epochs", 1, "--batch-size", 16, "-o", "out", "--jobs", 2]
    done = run_mgspec(tiny_dir, *sweep)
    assert done.returncode == 1, done.stdout + done.stderr  # some trials failed: reported, not fatal
    assert "Traceback" not in done.stderr
    rows = json.loads((tiny_dir / "out" / "sweep.json").read_text())
    assert [(r["channel_grid.coarsest"], r["train.lr"]) for r in rows] == [(2, 0.05), (2, 1e6), (4, 0.05), (4, 1e6)]
    for row in rows:
        counted = mgspec.count_spec(tiny_dir / "tiny.yaml", [f"channel_grid.coarsest={row['channel_grid.coarsest']}"])
        assert (row["weights"], row["macs"]) == (counted.total, counted.macs)
        if row["train.lr"] == 0.05:
            assert row["failed"] == 0 and 0 <= row["best_test_acc"] <= 1 and 0 <= row["best_val_acc"] <= 1
        else:
            assert row["failed"] == 1 and row["best_test_acc"] is None
    assert done.stderr.count("failed: ") == 2 and "diverged" in done.stderr
    assert len(_stamps(tiny_dir / "out")) == 2  # the two stable points trained; the diverged ones kept no epoch

    stamps = _stamps(tiny_dir / "out")
    again = run_mgspec(tiny_dir, *sweep)
    assert again.returncode == 1, again.stderr
    assert "seed 0 in" not in again.stdout  # no trial started
    assert _stamps(tiny_dir / "out") == stamps
    assert json.loads((tiny_dir / "out" / "sweep.json").read_text()) == rows

    retried = run_mgspec(tiny_dir, *sweep, "--retry-failed")  # the failed points train once more (and diverge again)
    assert retried.returncode == 1, retried.stderr
    assert retried.stdout.count("trained again") == 2 and retried.stdout.count("seed 0 in") == 2
    assert _stamps(tiny_dir / "out") == stamps
    report = json.loads(run_mgspec(tiny_dir, "study", "report", "out", "-f", "json").stdout)
    assert len(report["trials"]) == 4  # the retries replace the trials they retry
    assert sorted(t["number"] for t in report["trials"] if t["state"] == "failed") == [4, 5]
    assert json.loads((tiny_dir / "out" / "sweep.json").read_text()) == rows


@pytest.mark.slow
def test_zip_and_set_sweep_trains_the_points_side_by_side(tiny_dir):
    sweep = ["sweep", "tiny.yaml", "--zip", "channel_grid.coarsest=2,4", "--zip", "levels=1,2", "--set", "width=2"]
    sweep += ["--train", "-d", "cifar10", "--data-dir", "data", "--epochs", 1, "--val-split", 0, "-o", "out", "-q"]
    done = run_mgspec(tiny_dir, *sweep)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads((tiny_dir / "out" / "sweep.json").read_text())
    assert [(r["channel_grid.coarsest"], r["levels"]) for r in rows] == [(2, 1), (4, 2)]
    assert all("width" not in r and "best_val_acc" not in r for r in rows)  # --set is fixed; no split asked
    study = load_study(tiny_dir / "out" / "study.yaml")
    assert study.model.zip == {"channel_grid.coarsest": [2, 4], "levels": [1, 2]}
    assert study.model.grid == {"width": [2]} and study.model.train["val_split"] == 0
    for trial in sorted((tiny_dir / "out" / "trials").iterdir()):
        config = json.loads((trial / "config.json").read_text())
        levels = config["experiment"]["params"]["levels"]
        assert len(config["spec"]["resolved"]["resolution_grid"]["levels"]) == levels
        assert "width=2" in config["spec"]["overrides"]


def test_a_bad_value_of_a_trained_sweep_is_located_and_writes_nothing(tiny_dir):
    done = run_mgspec(tiny_dir, "sweep", "tiny.yaml", "--grid", "channel_grid.coarsest=0,2", "--train",
                      "--data-dir", "data", "-o", "out")  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --grid channel_grid.coarsest=0: channel_grid.coarsest"), done.stderr
    assert not (tiny_dir / "out").exists()
    zipped = run_mgspec(tiny_dir, "sweep", "tiny.yaml", "--zip", "channel_grid.coarsest=4,16", "--zip", "width=2,1",
                        "--set", "channel_grid.group_size=2", "-o", "out")  # fmt: skip
    assert zipped.returncode == 2 and not (tiny_dir / "out").exists()
    assert zipped.stderr.startswith("error: --zip channel_grid.coarsest=16: channel_grid.coarsest: coarsest width 16")
    from_stdin = subprocess.run(
        [sys.executable, "-m", "mgspec", "sweep", "-", "--grid", "width=1,2", "--train", "--data-dir", "data"],
        input=(tiny_dir / "tiny.yaml").read_text(), cwd=tiny_dir, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert from_stdin.returncode == 2 and from_stdin.stderr.startswith(
        "error: <stdin>: sweep --train needs the spec as"
    )
    bad_lr = run_mgspec(tiny_dir, "sweep", "tiny.yaml", "--grid", "width=1,2", "--train", "--data-dir", "data",
                        "--lr", "-1", "-o", "out")  # fmt: skip
    assert bad_lr.returncode == 2 and "--lr" in bad_lr.stderr and not (tiny_dir / "out").exists()


def _zip_study(tmp_path: Path, body: str) -> Path:
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    path = tmp_path / "study.yaml"
    path.write_text("name: z\nspec: tiny.yaml\ndataset: cifar10\n" + body)
    return path


def test_a_study_file_zips_lists_side_by_side_and_cuts_levels(tmp_path):
    study = load_study(
        _zip_study(
            tmp_path, "seed: 3\nseeds: 2\ngrid: {width: [1, 2]}\nzip: {levels: [1, 2], channel_grid.coarsest: [2, 4]}\n"
        )
    )
    assert points.grid_points(study) == [
        {"width": 1, "levels": 1, "channel_grid.coarsest": 2},
        {"width": 1, "levels": 2, "channel_grid.coarsest": 4},
        {"width": 2, "levels": 1, "channel_grid.coarsest": 2},
        {"width": 2, "levels": 2, "channel_grid.coarsest": 4},
    ]
    one_level = points.counts(study, {"levels": 1, "channel_grid.coarsest": 2, "width": 1})
    cut = yaml.safe_load(synthetic.TINY_SPEC)
    cut["resolution_grid"]["levels"] = cut["resolution_grid"]["levels"][:1]
    (tmp_path / "cut.yaml").write_text(yaml.safe_dump(cut))
    expected = mgspec.count_spec(tmp_path / "cut.yaml", ["channel_grid.coarsest=2", "width=1"])
    assert one_level == (expected.total, expected.macs)
    assert study.model.seed == 3  # seeds 3 and 4


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("zip: {levels: [1, 2], width: [1]}\n", "same number of values"),
        ("grid: {width: [1]}\nzip: {width: [1, 2]}\n", "both in grid and in zip"),
        ("zip: {}\n", "non-empty"),
        ("search: {trials: 2, space: {width: [1, 2]}}\nzip: {levels: [1]}\n", "either a grid or a search"),
        ("seed: -1\ngrid: {width: [1]}\n", "seed"),
    ],
)
def test_bad_zip_and_seed_are_located(tmp_path, body, message):
    with pytest.raises(SpecError, match=message) as err:
        load_study(_zip_study(tmp_path, body))
    assert err.value.location.source.endswith("study.yaml") and err.value.location.line is not None


def test_a_bad_levels_value_is_located_at_its_place_in_the_grid(tmp_path):
    path = _zip_study(tmp_path, "grid:\n  levels: [1, 9]\n")
    synthetic.write_cifar(tmp_path / "data")
    from mgspec.study.runner import Options, check

    with pytest.raises(SpecError, match="the spec has 2 levels") as err:
        check(load_study(path), Options(data_dir=tmp_path / "data", device="cpu"))
    assert (err.value.location.line, err.value.field) == (5, "grid.levels[1]")


def test_a_paper_row_study_uses_the_papers_protocol_unless_told():
    from mgspec import paper

    row = paper.find("IV/cK=16,gs=8")
    assert inline.from_row(row)["train"]["val_split"] == 0
    assert inline.from_row(row, train={"val_split": 0.2}, seed=5)["train"]["val_split"] == 0.2
    assert inline.from_row(row, seed=5)["seed"] == 5


@pytest.mark.slow
def test_reproduce_rerun_trains_nothing_and_paper_results_reads_it(tmp_path):
    data = synthetic.write_idx(tmp_path / "fashion", train=16, test=8)
    args = ["reproduce", "IV/cK=16,gs=8", "--data-dir", data, "--epochs", 1, "--batch-size", 8, "--max-batches", 1]
    args += ["--seeds", 2, "--jobs", 2, "-o", "run"]
    done = run_mgspec(tmp_path, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    stamps = _stamps(tmp_path / "run")
    assert len(stamps) == 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["aggregate"]["seeds"] == [0, 1] and summary["experiment"]["paper_row"] == "IV/cK=16,gs=8"
    again = run_mgspec(tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert _stamps(tmp_path / "run") == stamps
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["aggregate"] == summary["aggregate"]
    shown = run_mgspec(tmp_path, "paper", "-t", "IV", "-f", "json", "--results", "run")
    assert shown.returncode == 0, shown.stderr
    ours = {r["id"]: r for r in json.loads(shown.stdout)}["IV/cK=16,gs=8"]
    assert ours["ours_seeds"] == 2
    assert ours["ours_test_acc"] == pytest.approx(100 * summary["aggregate"]["best_test_acc"]["mean"])
