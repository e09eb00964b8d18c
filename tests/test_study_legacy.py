"""Studies made by earlier versions of mgspec, or in ways it refuses now, continue or are refused
clearly: a journal two studies share, a range read as another kind, a point trained with
``train.<option>`` reported beside the paper's recipe.

Storages are real (Optuna's journal file); the old state is written with Optuna as the old
version wrote it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mgspec import paper
from mgspec.errors import SpecError
from mgspec.study import load_study, results
from mgspec.study import report as reporting
from mgspec.study import storage as stores
from mgspec.study.draws import check_drawn
from mgspec.study.runner import _refuse_another
from tests import synthetic

optuna = pytest.importorskip("optuna", reason="studies need the study extra: pip install 'mgspec[study]'")


def _study_file(tmp_path: Path, name: str, body: str = "grid: {width: [1]}\n") -> Path:
    (tmp_path / "tiny.yaml").write_text(synthetic.TINY_SPEC)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nspec: tiny.yaml\ndataset: cifar10\ntrain: {{epochs: 1}}\n" + body)
    return path


def _shared_journal(out: Path, ran: tuple[str, ...] = ("a", "b")):
    """A journal two studies share (an old version let two studies use one --out), each with a
    trial whose run directory is recorded relative to the journal's directory."""
    storage = stores.open_storage(None, out)
    for name in ("a", "b"):
        handle = optuna.create_study(study_name=name, storage=storage, directions=["maximize"])
        if name in ran:
            handle.enqueue_trial({}, user_attrs={"seed": 0, "run_dir": f"trials/{name}-0-seed0"})
            trial = handle.ask()
            handle.tell(trial, 0.5)
    return storage


def test_a_directory_two_studies_shared_continues_each_and_refuses_a_third(tmp_path):
    out = tmp_path / "out"
    storage = _shared_journal(out)
    for name in ("a", "b"):
        _refuse_another(load_study(_study_file(tmp_path, name)), out, storage)  # no error: its own
    with pytest.raises(SpecError) as refused:
        _refuse_another(load_study(_study_file(tmp_path, "c")), out, storage)
    assert str(refused.value).startswith(f"{out}: this directory holds the study 'a', 'b'; ")
    assert refused.value.hint == "give the study 'c' another --out"


def test_the_report_of_a_shared_journal_names_the_studies_that_ran_there(tmp_path):
    out = tmp_path / "out"
    storage = _shared_journal(out)
    with pytest.raises(SpecError, match=r"the storage holds 2 studies, 2 of which ran in .*out: 'a', 'b'"):
        reporting.load(None, storage, out)

    lone = tmp_path / "lone"
    storage = _shared_journal(lone, ran=("b",))  # 'a' was created and never trained a trial
    assert reporting.load(None, storage, lone)[0] == "b"


@pytest.mark.parametrize(
    ("old", "written", "message"),
    [
        (
            "int",
            "{low: 2.0, high: 4.0, step: 1.0}",
            "the study drew width as integers 2 to 4 in steps of 1; "
            "this file draws it as decimals 2 to 4 in steps of 1",
        ),
        (
            "float",
            "{low: 2, high: 4, step: 1}",
            "the study drew width as decimals 2 to 4 in steps of 1; "
            "this file draws it as integers 2 to 4 in steps of 1",
        ),
    ],
)
def test_a_range_drawn_as_another_kind_before_is_refused_at_the_axis(tmp_path, old, written, message):
    """An earlier version drew a range written 2.0 as integers: Optuna refuses every draw of the
    parameter as decimals, so the run is refused before it starts, at the range in the file."""
    path = _study_file(tmp_path, "s", f"search:\n  trials: 2\n  space:\n    width: {written}\n")
    study = load_study(path)
    storage = stores.open_storage(None, tmp_path / "out")
    handle = stores.open_study(study, storage, tmp_path / "out")
    trial = handle.ask()  # as the earlier version drew
    (trial.suggest_int if old == "int" else trial.suggest_float)("width", 2, 4, step=1)
    handle.tell(trial, 0.5)
    with pytest.raises(SpecError) as refused:
        check_drawn(study, handle)
    assert str(refused.value).splitlines()[0] == f"{path}:8:12: {message}"
    assert refused.value.hint.startswith("write the range as the study drew it (2 draws integers, 2.0 decimals)")

    again = "{low: 2, high: 4, step: 1}" if old == "int" else "{low: 2.0, high: 4.0, step: 1.0}"
    path.write_text(path.read_text().replace(written, again))  # written as it was drawn: goes on
    check_drawn(load_study(path), handle)


def test_a_range_that_changed_otherwise_says_what_changed(tmp_path):
    path = _study_file(tmp_path, "s", "search:\n  trials: 2\n  space:\n    width: {low: 1.0, high: 4.0}\n")
    study = load_study(path)
    handle = stores.open_study(study, stores.open_storage(None, tmp_path / "out"), tmp_path / "out")
    trial = handle.ask()
    trial.suggest_float("width", 1.0, 4.0, log=True)
    handle.tell(trial, 0.5)
    with pytest.raises(SpecError) as refused:
        check_drawn(study, handle)
    assert "drew width as decimals 1 to 4 on a log scale; this file draws it as decimals 1 to 4" in str(refused.value)
    assert refused.value.hint == "give the study another name and --out"


def test_paper_results_count_the_point_train_options_and_the_recorded_split():
    """A point's ``train.lr`` and the validation split its study held out are what it trained
    with: both differ from the paper's recipe (lr 0.05, the whole training set)."""
    row = paper.find("IV/cK=16,gs=8")
    trained = results.trained({"train": {"epochs": 1}}, {"train.lr": 0.5, "width": 2}, {"val_split": 0.1})
    assert trained == {"val_split": 0.1, "epochs": 1, "lr": 0.5}
    assert results.recipe_differences(row, trained) == {"epochs": [1, 100], "lr": [0.5, 0.05], "val_split": [0.1, 0.0]}
    exact = results.trained({"train": {"val_split": 0}}, {"train.lr": 0.05}, {"val_split": 0.1})
    assert results.recipe_differences(row, exact) == {}


@pytest.mark.parametrize("storage", [None, "postgresql://db/studies"])
def test_a_moved_directory_of_an_earlier_version_continues_its_runs_where_they_are_now(tmp_path, storage):
    """An earlier version recorded absolute run directories; after ``mv old new`` an interrupted
    trial continues from its checkpoint under the new directory, not from scratch."""
    from mgspec.study.worker import Job, _run_dir

    out = tmp_path / "new"
    handle = optuna.create_study(storage=stores.open_storage(None, tmp_path / "journal"), directions=["maximize"])
    handle.enqueue_trial({}, user_attrs={"seed": 0, "run_dir": str(tmp_path / "old" / "trials" / "3-seed0")})
    trial = handle.ask()
    job = Job("study.yaml", str(out), storage=storage)
    fresh = f"trials/{trial.number}-seed0"
    expect = (lambda rel: (out / rel, rel)) if storage is None else (lambda rel: (out / rel, str(out / rel)))
    assert _run_dir(trial, 0, job) == expect(fresh)  # nothing there: a fresh run
    (out / "trials" / "3-seed0").mkdir(parents=True)
    assert _run_dir(trial, 0, job) == expect("trials/3-seed0")
    (tmp_path / "old" / "trials" / "3-seed0").mkdir(parents=True)  # copied, not moved: the copy's own
    assert _run_dir(trial, 0, job) == expect("trials/3-seed0")
    (out / "trials" / "3-seed0").rmdir()  # a shared database's trial trained elsewhere on this machine
    old = tmp_path / "old" / "trials" / "3-seed0"
    assert _run_dir(trial, 0, job) == (old, str(old))
