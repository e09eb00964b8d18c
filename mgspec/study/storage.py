"""Where a study's trials live: Optuna storages, and the study's definition and defaults in them.

The default storage is Optuna's ``JournalStorage`` with a file backend, ``<out>/journal.log``
(safe for many processes on one machine); ``--storage postgresql://...`` shares a study across
machines (psycopg 3). The process that creates the Optuna study records the study file's
definition and queues every grid point and seed; every later process checks that its study
file has the same definition (and refuses one that differs, saying where). Which worker
trains which trial, and continuing the trials of workers that are gone: :mod:`mgspec.study.claims`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from mgspec.errors import Location, SpecError
from mgspec.study import locks, points, require
from mgspec.study.model import Study

DEFINITION, READY = "mgspec_definition", "mgspec_ready"
#: The training defaults a study was created with (a study made before they were recorded: see
#: :func:`recorded_defaults`).
DEFAULTS = "mgspec_defaults"


def default_out(study_file: Path, name: str) -> Path:
    """Where a study runs without ``--out``: ``studies/<name>/``; a ``study.yaml`` kept in its study
    directory (as ``sweep`` and ``reproduce`` write ``<out>/study.yaml``) runs and reports there."""
    here = Path(study_file).parent
    if Path(study_file).name == "study.yaml" and (here / "journal.log").is_file():
        return here
    return Path("studies") / name


def redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def open_storage(url: str | None, out: Path, parallel: bool = True):
    """The Optuna storage: a journal file in ``out`` by default, or a database URL."""
    optuna = require("optuna")
    where = Location(f"--storage {redact(url)}") if url is not None else Location(str(out / "journal.log"))
    if url is not None and not url.strip():
        raise SpecError("an empty storage URL", where, hint="leave out --storage (a journal in --out), or give a URL")
    if url is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        journal = out / "journal.log"
        if out.exists() and not out.is_dir():
            raise SpecError("not a directory: a study's --out is a directory", Location(f"--out {out}"),
                            hint="give --out a new or a study's directory")  # fmt: skip
        if journal.is_file():
            check_journal(journal)
        out.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(journal)))
    if url.startswith("sqlite") and parallel:
        raise SpecError(
            "SQLite cannot take parallel writers", where, hint="leave out --storage (a journal file) or use PostgreSQL"
        )
    if re.match(r"postgres(ql)?://", url):
        require("psycopg")
        url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    elif not re.match(r"(postgresql\+psycopg|sqlite|mysql[+a-z]*)://", url):
        raise SpecError("unknown storage", where, hint="use postgresql://USER@HOST:PORT/DB, or leave out --storage")
    try:
        return _rdb_storage(optuna, url)
    except Exception as exc:  # connection refused, unknown database, bad credentials
        reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        driver = None
        if "Failed to import DB access module" in reason:  # SQLAlchemy's driver for the URL is missing
            driver = "MySQL needs a driver: pip install PyMySQL, and mysql+pymysql://USER@HOST/DB"
        raise SpecError(f"cannot open the storage: {reason}", where, hint=driver) from None


def check_journal(path: Path) -> None:
    """Refuse a journal Optuna could not read back, before anything is appended to it.

    Optuna skips a last line cut short (a write in progress), but once another entry follows it
    the journal cannot be read at all: a write that did not finish (a full disk, a killed
    process) must be removed first. Read under the journal's own lock, so a write in progress
    is not taken for a broken one.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        raw = path.read_bytes()
    finally:
        lock.release()
    lines = raw.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        try:
            whole = line.endswith(b"\n") and isinstance(json.loads(line.decode("utf-8")), dict)
        except (UnicodeDecodeError, ValueError):
            whole = False
        if whole:
            continue
        last = number == len(lines)
        why = ": the last write did not finish (a full disk, a killed process)" if not line.endswith(b"\n") else ""
        then = "" if last else " and the lines after it, or start the study again in another --out"
        raise SpecError(
            f"line {number} is not an entry Optuna wrote{why}",
            Location(str(path), number),
            hint=f"keep a copy of the file, then remove line {number}{then}",
        )


def _rdb_storage(optuna, url: str, attempts: int = 5):
    """Optuna's RDBStorage; processes that create its tables at the same moment try again.

    Optuna creates the schema on first use; two processes doing so at once on PostgreSQL make
    one of them fail with a unique violation (on a table or type name). The tables then exist,
    so opening again succeeds.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except (IntegrityError, ProgrammingError):
            time.sleep(0.2 * attempt)
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def _sampler(study: Study):
    optuna = require("optuna")
    kind = study.model.search.sampler if study.is_search else "random"
    if kind is None:
        kind = "nsga2" if len(study.objectives) > 1 else "tpe"
    return {
        "nsga2": optuna.samplers.NSGAIISampler,
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
    }[kind]()


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted paths where two definitions differ."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b, path = old.get(k), new.get(k), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, path + ".")
        elif a != b:
            out.append("the spec file's text" if path == "spec_text" else f"{path} ({a!r} -> {b!r})")
    return out


def open_study(study: Study, storage, out: Path, wait=None):
    """Create the Optuna study (recording the definition, queueing the grid) or continue it.

    ``wait`` is called while another process holds the study's lock (see :func:`locks.locked`).

    Under the study's lock (:func:`locks.locked`): a study whose creator stopped before it had
    queued every point and seed is completed here, so no point is lost.
    """
    optuna = require("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    definition = study.definition()
    with locks.locked(storage, out, study.name, wait):
        try:
            handle = optuna.create_study(
                study_name=study.name,
                storage=storage,
                directions=list(study.objectives.values()),
                sampler=_sampler(study),
            )
        except optuna.exceptions.DuplicatedStudyError:
            handle = optuna.load_study(study_name=study.name, storage=storage, sampler=_sampler(study))
        stored = handle.user_attrs.get(DEFINITION)
        if READY not in handle.user_attrs and stored in (None, definition):
            if stored is None:
                handle.set_user_attr(DEFINITION, stored := definition)
            if DEFAULTS not in handle.user_attrs:
                handle.set_user_attr(DEFAULTS, current_defaults())
            _queue_grid(study, handle)
            handle.set_user_attr(READY, True)
        elif DEFAULTS not in handle.user_attrs:
            handle.set_user_attr(DEFAULTS, recorded_defaults(handle))
    if stored != definition:
        stored, spec = stored or {}, study.spec_path
        what = "; ".join(differences(stored, definition)).replace("the spec file's text", f"the text of {spec}")
        changed = [k for k in definition if k in study.source.data and stored.get(k) != definition[k]]
        where = study.locate(changed[0]) if changed else Location(str(spec))
        raise SpecError(
            f"the study {study.name!r} in this storage was made from a different study file: {what}",
            where,
            hint="restore the file, or give the changed study another name and --out"
            if study.source.name == str(study.path)
            else "give the options it was made with, or another --out",  # sweep --train, reproduce
        )
    return handle


def _queue_grid(study: Study, handle) -> None:
    """Queue every grid point and seed not queued yet (all of them, for a new study)."""
    there = {(t.user_attrs.get("point"), t.user_attrs.get("seed")) for t in handle.get_trials(deepcopy=False)}
    for point in points.grid_points(study) if not study.is_search else ():
        for seed in range(study.model.seed, study.model.seed + study.model.seeds):
            if (points.key(point), seed) not in there:
                handle.enqueue_trial(point, user_attrs={"seed": seed, "point": points.key(point)})


def current_defaults() -> dict:
    """The defaults a study created now records (a study file's ``train:`` overrides them)."""
    from mgspec.run_options import DEFAULT_VAL_SPLIT

    return {"val_split": DEFAULT_VAL_SPLIT}


def recorded_defaults(handle) -> dict:
    """The defaults of a study made before they were recorded, read from what its trials did.

    Trials that completed record what they were selected on: with a validation split (the
    default from when trials first held one out) or without (the releases before: every trial
    trained on the whole training set, ``val_split`` 0). A study none of whose trials completed
    takes today's defaults: nothing trained differs.
    """
    state = require("optuna").trial.TrialState
    done = [t for t in handle.get_trials(deepcopy=False, states=(state.COMPLETE,)) if "seed" in t.user_attrs]
    defaults = current_defaults()
    if done and not any(
        t.user_attrs.get("val_acc") is not None or t.user_attrs.get("selected_on") == "val" for t in done
    ):
        defaults["val_split"] = 0.0
    return defaults


def default_val_split(handle) -> float:
    """The validation split of a trial whose study does not set one: the study's own default.

    Every trial of a study selects the same way, also when the default changed since the study
    was created (its later trials would otherwise select on validation, its earlier on test).
    """
    return float(handle.user_attrs.get(DEFAULTS, current_defaults())["val_split"])
