"""The paper's registry: every row of Tables I-IX counted or explained; `mgspec paper` and `mgspec reproduce`."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from mgspec import paper
from mgspec.cli.app import app
from mgspec.errors import SpecError
from tests.conftest import ROOT, SHARED_DATA, needs_cifar
from tests.synthetic import write_idx

runner = CliRunner()

ROWS_PER_TABLE = {"I": 6, "II": 21, "III": 9, "IV": 5, "V": 8, "VI": 6, "VII": 8, "VIII": 6, "IX": 10}


def _rounds_to_printed(count: int, row: paper.Row) -> bool:
    return round(count / 1000) == row.printed_k


def test_every_row_of_every_table_is_registered():
    assert {t: len(paper.rows(t)) for t in paper.TABLES} == ROWS_PER_TABLE
    assert len(paper.BY_ID) == len(paper.ROWS), "row ids are unique"
    for row in paper.ROWS:
        assert row.spec_path.is_file(), row.id
        assert row.dataset in paper.DATASET_TITLES, row.id
        assert 0 < row.published.test <= 100 and 0 <= row.published.std < 5 and 0 < row.published.train <= 100


@pytest.mark.parametrize("row", paper.ROWS, ids=lambda r: r.id)
def test_count_rounds_to_the_printed_one_or_the_note_explains_it(row):
    ours = paper.count(row)
    if row.note is None:
        assert _rounds_to_printed(ours, row), f"{row.id}: {ours:,} is not {row.printed_k}k and there is no note"
        return
    assert row.note.kind in paper.KINDS
    assert row.note.stated, "a note states the counts it rests on"
    for stated in row.note.stated:
        assert paper.stated_count(stated) == stated.count, (row.id, stated)
        assert f"{stated.count:,}" in row.note.text, (row.id, stated)
    if not _rounds_to_printed(ours, row):
        assert ours in [s.count for s in row.note.stated], f"{row.id}: the note must state our count {ours:,}"


def _by_kind(kind: str) -> list[paper.Row]:
    return [r for r in paper.ROWS if r.note and r.note.kind == kind]


def test_one_bn_per_step_rows_need_the_variant():
    rows = _by_kind("one-bn-per-step")
    assert {r.table for r in rows} == {"III", "IV", "VI"}
    for row in rows:
        assert "layers.norms_per_step=1" in row.overrides and paper.matches(row), row.id
        canonical = [s for s in row.note.stated if s.label == "canonical"]
        assert canonical and not any("norms_per_step" in o for o in canonical[0].overrides)
        assert not _rounds_to_printed(canonical[0].count, row), f"{row.id} matches canonically: no variant needed"


def test_swapped_labels_print_another_configurations_count():
    rows = _by_kind("swapped-label")
    assert [r.id for r in rows] == ["III/cK=32,gs=32", "III/cK=16,gs=4", "III/cK=16,gs=16"]
    for row in rows:
        assert not paper.matches(row)
        others = [s for s in row.note.stated if s.overrides != row.overrides]
        assert any(_rounds_to_printed(s.count, row) for s in others), row.id
    # the two 16s swap with each other: each prints the other's count
    a, b = paper.find("III/cK=16,gs=4"), paper.find("III/cK=16,gs=16")
    assert _rounds_to_printed(paper.count(a), b) and _rounds_to_printed(paper.count(b), a)


def test_slips_and_rows_without_a_variant_do_not_match_as_labelled():
    for row in _by_kind("slip") + _by_kind("no-variant"):
        assert not paper.matches(row), row.id
    for row in _by_kind("no-variant"):
        assert not any(_rounds_to_printed(s.count, row) for s in row.note.stated), row.id
    # copy slips: the printed count (and accuracy) is the row above's
    copied = paper.find("VII/gs=8,width=2")
    assert copied.printed_k == paper.find("VII/gs=4,width=2").printed_k
    assert copied.published == paper.find("VII/gs=4,width=2").published
    assert _rounds_to_printed(paper.count(paper.find("IX/width=3,post=1,gs=8")), paper.find("IX/width=3,post=3,gs=8"))


def test_canonical_rows_beside_variants():
    rows = _by_kind("canonical")
    assert [r.id for r in rows] == ["IV/cK=16,gs=4"]
    for row in rows:
        assert paper.matches(row) and not any("norms_per_step" in o for o in row.overrides)
        variant = [s for s in row.note.stated if any("norms_per_step" in o for o in s.overrides)]
        assert variant, "the note states the variant's count"
        # IV's 28k is ambiguous: the variant rounds to it too, and the note must say so
        assert _rounds_to_printed(variant[0].count, row) == ("as well" in row.note.text)


def test_summary_of_the_registry():
    matched = [r for r in paper.ROWS if paper.matches(r)]
    assert len(matched) == 69 and len(paper.ROWS) == 79


def test_find_is_forgiving_and_unknown_rows_get_close_matches():
    assert paper.find("ii/ck=64, gs=4").id == "II/cK=64,gs=4"
    assert paper.find("VII/gs=8,λ=2").id == "VII/gs=8,width=2"
    assert paper.rows("2") == paper.rows("II")
    with pytest.raises(SpecError) as exc:
        paper.find("II/cK=64,gs=5")
    assert "II/cK=64,gs=4" in str(exc.value)
    with pytest.raises(SpecError):
        paper.table_id("X")


def test_paper_command_prints_one_table_with_both_counts():
    result = runner.invoke(app, ["paper", "--table", "II"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "II/cK=64,gs=4" in out and "393,034" in out and "94.62 (0.10)" in out
    assert "III/" not in out and "rounding slip" in out


def test_paper_command_json_and_csv():
    result = runner.invoke(app, ["paper", "-f", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(records) == len(paper.ROWS)
    row = next(r for r in records if r["id"] == "III/cK=16,gs=4")
    assert (row["printed_k"], row["weights"], row["match"], row["note"]) == (420, 143_690, False, "swapped-label")
    assert row["test_acc"] == 93.40 and row["dataset"] == "fashionmnist"
    result = runner.invoke(app, ["paper", "-t", "vi", "-f", "csv"])
    assert result.exit_code == 0, result.output
    parsed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in parsed][2:] == ["VI/gs=64", "VI/gs=32", "VI/gs=16", "VI/gs=8"]
    assert parsed[2]["overrides"] == "resolution_grid.group_size=64 layers.norms_per_step=1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["paper", "--table", "X"], "unknown table"),
        (["paper", "-f", "xml"], "unknown format"),
        (["paper", "--figure", "5"], "no figure 5"),
        (["paper", "--figure", "7"], "needs a trained sweep"),
    ],
)
def test_paper_command_user_errors(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr
    assert "Traceback" not in result.output


def test_reproduce_unknown_row_is_one_message_and_leaves_nothing(tmp_path):
    result = runner.invoke(app, ["reproduce", "II/cK=64,gs=5", "--data-dir", str(tmp_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: no paper row 'II/cK=64,gs=5'"
    assert len(lines) == 2 and lines[1].startswith("  hint: did you mean II/cK=64,gs=4")
    assert not (tmp_path / "r").exists()


def test_reproduce_without_data_leaves_no_run_directory(tmp_path):
    result = runner.invoke(app, ["reproduce", "I/ResNet20", "--data-dir", str(tmp_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no CIFAR-10 files found" in result.stderr
    assert not (tmp_path / "r").exists()


def test_reproduce_trains_the_rows_network_with_seeds(tmp_path):
    """A FashionMNIST row (one BN per step) on tiny synthetic IDX files: fitted, recorded, aggregated."""
    data = write_idx(tmp_path / "fashion", train=16, test=8)
    run = tmp_path / "run"
    args = ["reproduce", "iv/cK=16, gs=8", "--data-dir", str(data), "--epochs", "1", "--batch-size", "8"]
    result = runner.invoke(app, [*args, "--max-batches", "1", "--seeds", "2", "-o", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert "fitted to fashionmnist: --set input.size=28" in result.stdout
    assert "paper: 93.35 (0.09)% test, 97.63% train" in result.stdout
    assert (
        "--val-split 0\n" in result.stdout and "the paper's protocol: trains on every training image" in result.stdout
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["experiment"]["paper_row"] == "IV/cK=16,gs=8" and summary["aggregate"]["seeds"] == [0, 1]
    assert summary["aggregate"]["weights"] == paper.count(paper.find("IV/cK=16,gs=8")) == 37_146
    assert sorted(d.name for d in (run / "trials").iterdir()) == ["0-seed0", "1-seed1"]  # a one-point study
    for seed in (0, 1):
        config = json.loads((run / "trials" / f"{seed}-seed{seed}" / "config.json").read_text())
        assert config["config"]["seed"] == seed
        assert config["experiment"]["published"] == {"test_acc": 93.35, "test_std": 0.09, "train_acc": 97.63}
        assert config["config"]["schedule"] == "step" and config["config"]["max_batches"] == 1
        assert "layers.norms_per_step=1" in config["spec"]["overrides"]
        assert config["config"]["val_split"] == 0  # the paper's protocol: no held-out images


def test_max_batches_must_be_positive():
    from mgspec.train import recipe

    assert recipe("cifar10", "data").max_batches is None
    with pytest.raises(SpecError, match="--max-batches"):
        recipe("cifar10", "data", max_batches=0)


def _fake_sweep(directory, trained: bool = True) -> None:
    directory.mkdir()
    rows = [
        {"channel_grid.coarsest": ck, "weights": w, "macs": 1, **({"best_test_acc": a} if trained else {})}
        for ck, w, a in [(8, 139_018, 0.52), (16, 147_658, 0.55), (64, 393_034, 0.61)]
    ]
    (directory / "sweep.json").write_text(json.dumps(rows))


def test_figure_7_from_a_sweep(tmp_path):
    _fake_sweep(tmp_path / "gs4")
    target = tmp_path / "fig" / "fig7.png"
    result = runner.invoke(app, ["paper", "--figure", "7", "--sweep", str(tmp_path / "gs4"), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000
    points = paper.figure7_points()
    assert set(points) == {"ResNet", "MgNet_{A,B}", "MgNet_{A,B} (grouped)", "MGiaD gs=4", "MGiaD gs=8"}
    assert points["MgNet_{A,B} (grouped)"][0] == (121_000, 87.02) and (101_000, 91.26) in points["MgNet_{A,B}"]
    assert (393_000, 94.62) in points["MGiaD gs=4"] and len(points["MGiaD gs=4"]) == 5


def test_figure_7_needs_a_trained_sweep(tmp_path):
    _fake_sweep(tmp_path / "counted", trained=False)
    for sweep in (tmp_path / "counted", tmp_path / "absent"):
        result = runner.invoke(app, ["paper", "--figure", "7", "--sweep", str(sweep), "-o", str(tmp_path / "f.png")])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "f.png").exists()


@pytest.mark.slow
@needs_cifar
def test_reproduce_a_row_on_the_real_cifar10_subset(tmp_path):
    """`mgspec reproduce` end to end: a short run of Table I's ResNet20 that `mgspec evaluate` reads."""
    run = tmp_path / "run"
    args = ["reproduce", "I/ResNet20", "--data-dir", str(SHARED_DATA), "--epochs", "1"]
    result = runner.invoke(app, [*args, "--max-batches", "2", "--batch-size", "32", "-o", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert "paper: 92.44 (0.16)% test, 93.54% train" in result.stdout
    trial = run / "trials" / "0-seed0"  # an ordinary run directory
    assert {p.name for p in trial.iterdir()} >= {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt"}
    config = json.loads((trial / "config.json").read_text())
    summary = json.loads((trial / "summary.json").read_text())
    record = json.loads((run / "summary.json").read_text())
    assert config["experiment"]["paper_row"] == record["experiment"]["paper_row"] == "I/ResNet20"
    assert config["config"]["max_batches"] == 2 and config["config"]["lr"] == 0.05
    assert summary["weights"] == record["aggregate"]["weights"] == paper.count(paper.find("I/ResNet20"))
    assert record["aggregate"]["best_test_acc"]["mean"] == summary["best_test_acc"]
    evaluated = runner.invoke(
        app,
        ["evaluate", str(ROOT / "specs" / "resnet20_cifar10.yaml"), str(trial), "-d", "cifar10",
         "--data-dir", str(SHARED_DATA), "-f", "json"],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["images"] == 846
    assert abs(json.loads(evaluated.stdout)["accuracy"] - summary["final_test_acc"]) < 1e-9
