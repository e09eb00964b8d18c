"""Re-running studies and sweeps: what a refusal leaves, how old studies select, what rows count.

A refused re-run leaves the study's directory as it was; a study made before validation splits
were the default keeps selecting the way it began; a point listed twice is refused before it
trains twice; an interrupted sweep says which seeds are unfinished, not failed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mgspec.errors import SpecError
from mgspec.study import claims, frontends, inline, load_study, runner
from mgspec.study import storage as stores
from tests import synthetic
from tests.conftest import run_mgspec

optuna = pytest.importorskip("optuna", reason="studies need the study extra: pip install 'mgspec[study]'")


def _sweep_args(grid: str, *more) -> list:
    return ["sweep", "tiny.yaml", "--grid", grid, "--train", "--data-dir", "data", "--epochs", 1, "-o", "out", *more]


def _create_sweep(tiny_dir: Path, grid: str) -> None:
    """The study a sweep makes in ``out``, created (not trained) the way the sweep does it."""
    from mgspec.train import sweep as sweeping

    data = frontends.sweep_study(
        tiny_dir / "tiny.yaml", [], [sweeping.parse_grid(grid)], [], dataset="cifar10", train={"epochs": 1}
    )
    study = inline.build(data, "--grid")
    runner.open_handle(study, tiny_dir / "out", runner.Options(data_dir=tiny_dir / "data"))
    inline.write(study, tiny_dir / "out")


def test_a_refused_sweep_rerun_keeps_the_study_file_the_storage_holds(tiny_dir):
    _create_sweep(tiny_dir, "width=1,2")
    before = (tiny_dir / "out" / "study.yaml").read_text()
    files = sorted(p.name for p in (tiny_dir / "out").iterdir())
    done = run_mgspec(tiny_dir, *_sweep_args("width=1,3"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "made from a different study file" in done.stderr
    assert "grid.width ([1, 2] -> [1, 3])" in done.stderr
    assert (tiny_dir / "out" / "study.yaml").read_text() == before  # still the study its journal holds
    assert sorted(p.name for p in (tiny_dir / "out").iterdir()) == files
    assert not (tiny_dir / "out" / "trials").exists()


def test_a_refused_storage_leaves_no_new_directory_behind(tiny_dir):
    done = run_mgspec(tiny_dir, *_sweep_args("width=1,2", "--storage", "sqlite:///db.sqlite", "--jobs", 2))
    assert done.returncode == 2 and "SQLite cannot take parallel writers" in done.stderr
    assert not (tiny_dir / "out").exists()
    unknown = run_mgspec(tiny_dir, *_sweep_args("width=1,2", "--storage", "redis://x"))
    assert unknown.returncode == 2 and "unknown storage" in unknown.stderr
    assert not (tiny_dir / "out").exists()
    empty = run_mgspec(tiny_dir, *_sweep_args("width=1,2", "--storage", ""))
    assert empty.returncode == 2 and empty.stderr.startswith("error: --storage : an empty storage URL"), empty.stderr
    assert not (tiny_dir / "out").exists()
    import importlib.util

    if importlib.util.find_spec("MySQLdb") is None:  # SQLAlchemy's default MySQL driver is not installed
        mysql = run_mgspec(tiny_dir, *_sweep_args("width=1,2", "--storage", "mysql://me@nowhere/db"))
        assert mysql.returncode == 2 and "pip install PyMySQL, and mysql+pymysql://" in mysql.stderr, mysql.stderr
        assert not (tiny_dir / "out").exists()
    (tiny_dir / "out").write_text("a file")
    file = run_mgspec(tiny_dir, *_sweep_args("width=1,2"))
    assert file.returncode == 2, file.stderr
    assert file.stderr.startswith("error: --out out: not a directory: a study's --out is a directory"), file.stderr
    assert (tiny_dir / "out").read_text() == "a file"


def test_sweep_options_are_named_in_their_errors(tiny_dir):
    done = run_mgspec(tiny_dir, *_sweep_args("width=1,2", "--seeds", 1001))
    assert done.returncode == 2 and done.stderr.startswith("error: --seeds: seeds:"), done.stderr
    last = run_mgspec(tiny_dir, *_sweep_args("width=1,2", "--seed", 2**32 - 1, "--seeds", 2))
    assert last.returncode == 2, last.stderr
    assert last.stderr.startswith("error: --seeds: seeds: the last seed is 4,294,967,295: from seed 4294967295 there")
    assert "room for 1, got 2" in last.stderr
    assert not (tiny_dir / "out").exists()


def _study_file(tmp_path: Path, body: str) -> Path:
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    path = tmp_path / "study.yaml"
    path.write_text("name: d\nspec: tiny.yaml\ndataset: cifar10\n" + body)
    return path


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("grid:\n  width: [1, 2, 1.0]\n", (5, "grid.width[2]"), "1.0 is listed twice"),
        ("grid:\n  levels: [2, 2]\n", (5, "grid.levels[1]"), "2 is listed twice"),
        ("zip:\n  levels: [1, 2, 1]\n  width: [2, 2, 2.0]\n", (5, "zip.levels[2]"), "zip row 2 .* repeats row 0"),
        ("search:\n  trials: 2\n  space:\n    width: [1, 1]\n", (7, "search.space.width[1]"), "listed twice"),
    ],
)
def test_a_point_listed_twice_is_refused_where_it_is_listed(tmp_path, body, where, message):
    with pytest.raises(SpecError, match=message) as err:
        load_study(_study_file(tmp_path, body))
    assert (err.value.location.line, err.value.field) == where


def test_values_that_train_different_points_are_not_duplicates(tmp_path):
    study = load_study(_study_file(tmp_path, "grid:\n  width: [1, 1.5]\n  train.amp: [true, false]\n"))
    assert study.model.grid == {"width": [1, 1.5], "train.amp": [True, False]}
    zipped = load_study(_study_file(tmp_path, "zip:\n  levels: [1, 1, 2]\n  width: [1, 2, 1]\n"))
    assert zipped.model.zip == {"levels": [1, 1, 2], "width": [1, 2, 1]}


def test_a_sweep_value_listed_twice_is_refused_before_training(tiny_dir):
    done = run_mgspec(tiny_dir, *_sweep_args("width=1,2,1"))
    assert done.returncode == 2, done.stderr
    assert "--grid width=...: '1' (value 2) repeats '1' (value 0): both build the same network" in done.stderr
    assert not (tiny_dir / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "width=1,1.0"], "--grid width=...: '1.0' (value 1) repeats '1' (value 0)"),
        (["--grid", "width=2", "--grid", "channel_grid.coarsest=4,2,4.0"], "'4.0' (value 2) repeats '4' (value 0)"),
        (
            ["--zip", "width=1,2,1.0", "--zip", "classes=10,10,10"],
            "--zip: 'width=1.0, classes=10' (value 2) repeats 'width=1, classes=10' (value 0)",
        ),
    ],
)
def test_a_counted_sweep_refuses_a_repeated_value_too(tiny_dir, args, message):
    """Without --train a repeat would print the same row twice: the same refusal as a trained sweep's."""
    done = run_mgspec(tiny_dir, "sweep", "tiny.yaml", *args, "--out", "out")
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tiny_dir / "out").exists()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--epochs", "5"], "--epochs"),
        (["-j", "2"], "--jobs"),
        (["--seeds", "1"], "--seeds"),
        (["--no-compile"], "--compile/--no-compile"),
        (["--storage", "sqlite:///x.db"], "--storage"),
        (["--name", "mine"], "--name"),
        (["--data-dir", "data"], "--data-dir"),
    ],
)
def test_a_training_option_without_train_is_refused_not_ignored(tiny_dir, args, option):
    done = run_mgspec(tiny_dir, "sweep", "tiny.yaml", "--grid", "width=1,2", *args, "--out", "out")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"error: {option}: an option of a trained sweep: it does nothing without --train" in done.stderr
    assert not (tiny_dir / "out").exists()
    counted = run_mgspec(tiny_dir, "sweep", "tiny.yaml", "--grid", "width=1,2", "--quiet", "--out", "out")
    assert counted.returncode == 0 and (tiny_dir / "out" / "sweep.json").is_file(), counted.stderr


def test_zip_rows_that_differ_in_one_path_are_not_repeats(tiny_dir):
    done = run_mgspec(tiny_dir, "sweep", "tiny.yaml", "--zip", "width=1,1", "--zip", "classes=10,5", "--out", "out")
    assert done.returncode == 0, done.stderr
    assert [r["classes"] for r in json.loads((tiny_dir / "out" / "sweep.json").read_text())] == [10, 5]


def test_the_seed_range_ends_at_the_last_seed(tmp_path):
    with pytest.raises(
        SpecError, match="the last seed is 4,294,967,295: from seed 4294967294 there is room for 2"
    ) as err:
        load_study(_study_file(tmp_path, f"seed: {2**32 - 2}\nseeds: 3\ngrid: {{width: [1]}}\n"))
    assert err.value.location.source.endswith("study.yaml")
    assert load_study(_study_file(tmp_path, f"seed: {2**32 - 3}\nseeds: 3\ngrid: {{width: [1]}}\n")).model.seed


def _made_before(study, out: Path, completed: dict | None):
    """A study as releases before ``mgspec_defaults`` made it: one trial completed with ``completed``
    user attributes (none: no trial completed), and seed 1 of the point waiting."""
    from optuna.distributions import CategoricalDistribution

    storage = stores.open_storage(None, out)
    handle = optuna.create_study(study_name="d", storage=storage, directions=["maximize"])
    handle.set_user_attr(stores.DEFINITION, study.definition())
    if completed is not None:
        trial = optuna.trial.create_trial(
            params={"width": 1},
            distributions={"width": CategoricalDistribution([1])},
            value=0.5,
            user_attrs={"seed": 0, "point": '{"width": 1}', **completed},
        )
        handle.add_trial(trial)
    handle.enqueue_trial({"width": 1}, user_attrs={"seed": 1, "point": '{"width": 1}'})
    handle.set_user_attr(stores.READY, True)
    return storage


def test_a_study_records_its_validation_default_and_an_older_study_keeps_the_one_it_began_with(tmp_path):
    """Trials of one study select the same way, also when the default changed since it was created."""
    path = _study_file(tmp_path, "train: {epochs: 1, max_batches: 1}\nseeds: 2\ngrid: {width: [1]}\n")
    synthetic.write_cifar(tmp_path / "data")
    study = load_study(path)
    new = stores.open_study(study, stores.open_storage(None, tmp_path / "new"), tmp_path / "new")
    assert new.user_attrs[stores.DEFAULTS] == {"val_split": 0.1}

    # Trials that held out nothing (the releases before validation splits): the study goes on without.
    storage = _made_before(study, tmp_path / "nosplit", {"test_acc": 0.5})
    assert stores.open_study(study, storage, tmp_path / "nosplit").user_attrs[stores.DEFAULTS] == {"val_split": 0.0}
    # Trials that held out the default split: the study goes on with it.
    split = {"test_acc": 0.5, "val_acc": 0.6, "selected_on": "val"}
    storage = _made_before(study, tmp_path / "split", split)
    assert stores.default_val_split(stores.open_study(study, storage, tmp_path / "split")) == 0.1
    # Nothing completed yet: today's default.
    none = _made_before(study, tmp_path / "none", None)
    assert stores.default_val_split(stores.open_study(study, none, tmp_path / "none")) == 0.1

    from mgspec.study.worker import Job, work

    job = Job(str(path), str(tmp_path / "nosplit"), data_dir=str(tmp_path / "data"), device="cpu")
    assert work(job, log=lambda m: None) == {"complete": 1, "failed": 0, "pruned": 0}
    config = json.loads((tmp_path / "nosplit" / "trials" / "1-seed1" / "config.json").read_text())
    assert config["config"]["val_split"] == 0.0
    summary = json.loads((tmp_path / "nosplit" / "trials" / "1-seed1" / "summary.json").read_text())
    assert summary.get("best_val_acc") is None  # selected on test, like the trial before it


def test_a_take_over_stopped_half_way_is_finished_by_the_next_and_never_retried_as_well(tmp_path):
    path = _study_file(tmp_path, "grid: {width: [1, 2]}\n")
    handle = stores.open_study(load_study(path), stores.open_storage(None, tmp_path / "out"), tmp_path / "out")
    first, second = handle.ask(), handle.ask()  # seed 0 of both points, running
    handle.tell(first, state=optuna.trial.TrialState.FAIL)  # failed training
    second.set_user_attr("run_dir", "trials/1-seed0")
    # take_over's first steps on an interrupted trial: marked, failed, its continuation not queued yet
    handle._storage.set_trial_user_attr(second._trial_id, claims.TAKEN_OVER, True)
    handle.tell(second, state=optuna.trial.TrialState.FAIL)
    assert claims.retry_failed(handle, log=lambda m: None) == 1
    assert claims.take_over(handle, log=lambda m: None) == 1  # the continuation, in the same run directory
    waiting = [t.user_attrs for t in handle.get_trials() if t.state.name == "WAITING"]
    assert [(w["retry_of"], w.get("run_dir")) for w in waiting] == [
        (first.number, None),
        (second.number, "trials/1-seed0"),
    ]
    assert [w["point"] for w in waiting] == ['{"width": 1}', '{"width": 2}']
    assert claims.retry_failed(handle, log=lambda m: None) == 0  # a retried trial is not retried twice
    assert claims.take_over(handle, log=lambda m: None) == 0  # nor continued twice


def _summary_dir(root: Path, name: str, acc: float) -> str:
    run = root / name
    run.mkdir(parents=True)
    keys = ("best_test_acc", "final_test_acc", "final_train_acc", "wall_time_s")
    (run / "summary.json").write_text(json.dumps({**dict.fromkeys(keys, acc), "weights": 7, "macs": 9}))
    return str(run)


def test_sweep_rows_count_failed_and_unfinished_seeds_apart_with_the_trained_counts(tmp_path):
    trial = {"params": {"width": 1}, "weights": 7, "macs": 9, "reason": None}
    report = {
        "trials": [
            {**trial, "number": 0, "state": "complete", "seed": 0, "run_dir": _summary_dir(tmp_path, "a", 0.5)},
            {**trial, "number": 1, "state": "failed", "seed": 1, "run_dir": None},
            {**trial, "number": 2, "state": "interrupted", "seed": 2, "run_dir": None},
            {**trial, "number": 3, "state": "waiting", "seed": 3, "run_dir": None, "weights": None, "macs": None},
            {**trial, "params": {"width": 2}, "number": 4, "state": "waiting", "seed": 0, "weights": 70, "macs": 90},
        ]
    }
    counted = [{"width": 1, "weights": 1, "macs": 1}, {"width": 2, "weights": 2, "macs": 2}]
    rows = frontends.sweep_rows(report, [{"width": "1"}, {"width": "2"}], {}, counted)
    assert [(r["weights"], r["macs"], r["failed"], r["unfinished"], r["seeds"]) for r in rows] == [
        (7, 9, 1, 2, 1),
        (70, 90, 0, 1, 0),
    ]
    assert rows[0]["best_test_acc"] == 0.5 and rows[1]["best_test_acc"] is None


@pytest.mark.parametrize("grid", ["null", "[1, 2]", "{levels: 3}"])
def test_levels_of_a_spec_without_a_list_of_levels_is_a_located_error(tmp_path, grid):
    from mgspec.levels import spec_for

    (tmp_path / "odd.yaml").write_text(f"name: odd\nresolution_grid: {grid}\n")
    with pytest.raises(SpecError, match="no resolution_grid.levels to sweep") as err:
        spec_for(tmp_path / "odd.yaml", {"levels": 1})
    assert str(err.value.location) == "--grid levels=1"


def test_the_study_plot_draws_the_accuracy_its_front_is_chosen_on():
    from mgspec.study import report

    def trial(number, weights, test, val):
        return {"number": number, "state": "complete", "weights": weights, "test_acc": test, "val_acc": val}

    # By test accuracy trial 1 would dominate trial 0; by validation (what selected them) neither does.
    trials = [trial(0, 10, 0.5, 0.9), trial(1, 5, 0.6, 0.8), {**trial(2, 1, None, None), "state": "failed"}]
    result = {"study": "s", "trials": trials, "pareto": report.pareto(trials, {"accuracy": "maximize"})}
    assert result["pareto"] == [0, 1]
    picture = report.drawn(result)
    assert picture["trials"] == [(10, 90.0), (5, 80.0)]
    assert picture["front"] == [(5, 80.0), (10, 90.0)]
    assert picture["label"] == "validation accuracy (%)"
    assert report.drawn({**result, "trials": [trial(0, 3, 0.5, None)], "pareto": [0]})["label"] == "test accuracy (%)"


def test_a_sweep_row_is_placed_by_the_accuracy_it_was_selected_on():
    from mgspec.train.sweep import pareto, selected_accuracy

    rows = [{"weights": 10, "best_test_acc": 0.5, "best_val_acc": 0.9}, {"weights": 5, "best_test_acc": 0.6}]
    assert [selected_accuracy(r) for r in rows] == [0.9, 0.6]
    assert pareto([{**r, "selected": selected_accuracy(r)} for r in rows], y="selected") == [1, 0]


@pytest.mark.slow
def test_sqlite_takes_one_job_and_a_moved_study_directory_keeps_its_trials(tmp_path):
    path = _study_file(tmp_path, "train: {epochs: 1, max_batches: 1, batch_size: 8}\ngrid: {width: [1]}\n")
    synthetic.write_cifar(tmp_path / "data")
    args = ["study", "run", path.name, "--data-dir", "data", "--out", "out"]
    done = run_mgspec(tmp_path, *args, "--storage", "sqlite:///db.sqlite", "--jobs", 1)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out" / "trials" / "0-seed0" / "summary.json").is_file()
    parallel = run_mgspec(tmp_path, *args, "--storage", "sqlite:///db.sqlite", "--jobs", 2)
    assert parallel.returncode == 2 and "SQLite cannot take parallel writers" in parallel.stderr

    journal = run_mgspec(tmp_path, *args[:-1], "first")
    assert journal.returncode == 0 and "trial 0:" in journal.stdout, journal.stdout + journal.stderr
    (tmp_path / "first").rename(tmp_path / "moved")
    shown = run_mgspec(tmp_path, "study", "report", "moved", "-f", "json")
    assert shown.returncode == 0, shown.stderr
    (trial,) = json.loads(shown.stdout)["trials"]
    assert trial["run_dir"] == str((tmp_path / "moved" / "trials" / "0-seed0").resolve())
    assert (Path(trial["run_dir"]) / "summary.json").is_file()
    again = run_mgspec(tmp_path, "study", "run", path.name, "--data-dir", "data", "--out", "moved")
    assert again.returncode == 0 and "trial 0:" not in again.stdout, again.stdout  # nothing trained again


@pytest.mark.slow
def test_a_sweep_of_a_changed_spec_names_the_spec_file(tiny_dir):
    first = run_mgspec(tiny_dir, *_sweep_args("width=1"))
    assert first.returncode == 0, first.stdout + first.stderr
    spec = tiny_dir / "tiny.yaml"
    spec.write_text(spec.read_text().replace("coarsest: 4", "coarsest: 2"))
    done = run_mgspec(tiny_dir, *_sweep_args("width=1"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        f"error: {spec}: the study 'sweep-tiny' in this storage was made from a different study file: " in done.stderr
    )
    assert f"the text of {spec}" in done.stderr and "study.yaml" not in done.stderr


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        ("search:\n  trials: 1\n  space:\n    width: {low: 2, high: 0.5}\n", "study.yaml:7:12: search.space.width",
         "low 2 is above high 0.5"),
        ("search:\n  trials: 1\n  space:\n    width: {low: 1, high: 2, step: 0}\n",
         "study.yaml:7:36: search.space.width.step", "input should be greater than 0, got 0"),
        ("search:\n  trials: 1\n  space:\n    width: {low: 1}\n", "study.yaml:7:12: search.space.width.high",
         "missing required field 'high'"),
        ("search:\n  trials: 1\n  space:\n    width: {low: 0.5, high: 1.0e+300, step: 0.5}\n",
         "study.yaml:7:12: search.space.width", "more than 1,000,000 steps from low to high: take a larger step"),
        ("search:\n  trials: 1\n  space:\n    width: {low: 0.5, high: .inf}\n", "study.yaml:7:12: search.space.width",
         "low, high and step must be finite numbers"),
        ("search:\n  trials: 1\n  space:\n    width: [{a: 1}]\n", "study.yaml:7:13: search.space.width[0]",
         "Input should be a number, a string or true/false"),
        ("train: {epochs: 2.0}\ngrid: {width: [1]}\n", "study.yaml:4:17: train.epochs",
         "input should be a valid integer, got 2.0"),
        ("train: {epochs: '1'}\ngrid: {width: [1]}\n", "study.yaml:4:17: train.epochs",
         "input should be a valid integer, got '1'"),
        ("train: {compile: 1}\ngrid: {width: [1]}\n", "study.yaml:4:18: train.compile",
         "input should be a valid boolean, got 1"),
        ("grid:\n  width: [1]\n  train.batch_size: [8, 1.5]\n", "study.yaml:6:25: grid.train.batch_size[1]",
         "input should be a valid integer, got 1.5"),
        ("grid:\n  train.frobnicate: [1]\n", "study.yaml:5:21: grid.train.frobnicate",
         "unknown train option 'frobnicate'"),
    ],
)  # fmt: skip
def test_a_bad_study_value_is_one_message_at_its_place(tmp_path, body, where, message):
    """The branch a value meant speaks (a range's own error, not a list's), types are the recipe's."""
    with pytest.raises(SpecError) as err:
        load_study(_study_file(tmp_path, body))
    assert str(err.value).splitlines()[0] == f"{tmp_path / where}: {message}"


@pytest.mark.parametrize(
    ("train", "where", "message"),
    [
        ("{val_split: 1.5}", "study.yaml:4:20: train.val_split", "--val-split must be at least 0 and less than 1"),
        ("{epochs: 0}", "study.yaml:4:17: train.epochs", "--epochs must be at least 1, not 0"),
        (
            "{epochs: 100000000000000000000}",
            "study.yaml:4:17: train.epochs",
            "--epochs 100,000,000,000,000,000,000: at most 100,000",
        ),
        ("{amp: fp8}", "study.yaml:4:14: train.amp", "unknown --amp-dtype 'fp8'"),
    ],
)
def test_a_bad_train_option_is_located_at_its_key_not_at_a_grid_value(tmp_path, train, where, message):
    from mgspec.study import points

    synthetic.write_cifar(tmp_path / "data", train_per_batch=16, test=24)
    study = load_study(_study_file(tmp_path, f"train: {train}\ngrid: {{width: [1, 2]}}\n"))
    with pytest.raises(SpecError) as err:
        points.validate(study, tmp_path / "data", "cpu")
    assert str(err.value).splitlines()[0].startswith(f"{tmp_path / where}: {message}")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"name: s\n\xff\xfe", "study.yaml:2:1: cannot read study file: byte 0xff is not UTF-8"),
        (b"", "study.yaml:1: the study file is empty"),
        (b"- 1\n", "study.yaml:1:1: a study file must be a YAML mapping at the top level"),
    ],
)
def test_an_unreadable_study_file_is_called_a_study_file(tmp_path, raw, message):
    (tmp_path / "study.yaml").write_bytes(raw)
    with pytest.raises(SpecError) as err:
        load_study(tmp_path / "study.yaml")
    assert str(err.value) == f"{tmp_path}/{message}"


def test_a_sweep_rerun_with_other_training_options_names_them_not_the_grid(tiny_dir):
    _create_sweep(tiny_dir, "width=1,2")
    done = run_mgspec(tiny_dir, *_sweep_args("width=1,2", "--epochs", 2))
    assert done.returncode == 2, done.stdout + done.stderr
    first, hint = done.stderr.splitlines()[:2]
    assert first.startswith("error: the training options (--epochs, --batch-size, --lr, ...): the study 'sweep-tiny'")
    assert "train.epochs (1 -> 2)" in first
    assert hint == "  hint: give the options it was made with, or another --out"


@pytest.mark.parametrize(("target", "message"), [("front.txt", "--plot writes .png, .pdf, .svg files"),
                                                 ("pictures", "--plot names a directory")])  # fmt: skip
def test_a_plot_that_is_no_picture_file_is_refused_first(tiny_dir, target, message):
    (tiny_dir / "pictures").mkdir()
    done = run_mgspec(tiny_dir, "study", "report", "nowhere", "--plot", target)
    assert done.returncode == 2 and f"error: {target}: {message}" in done.stderr, done.stderr
    assert not (tiny_dir / "front.txt").exists() and not (tiny_dir / "pictures.png").exists()


def test_a_study_file_in_its_study_directory_runs_and_reports_there(tiny_dir):
    """``sweep`` writes ``out/study.yaml``, which ``study run`` runs like any study file: without
    ``--out`` it continues the study of that directory (not a new ``studies/<name>/``)."""
    _create_sweep(tiny_dir, "width=1")
    done = run_mgspec(tiny_dir, "study", "run", "out/study.yaml", "--data-dir", "data")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "storage out/journal.log" in done.stdout and not (tiny_dir / "studies").exists()
    report = run_mgspec(tiny_dir, "study", "report", "out/study.yaml", "-f", "json")
    assert report.returncode == 0, report.stderr
    (trial,) = json.loads(report.stdout)["trials"]
    assert trial["state"] == "complete" and trial["run_dir"] == str((tiny_dir / "out/trials/0-seed0").resolve())
    again = run_mgspec(tiny_dir, "study", "run", "out/study.yaml", "--data-dir", "data")
    assert again.returncode == 0 and "trial 1" not in again.stdout, again.stdout
