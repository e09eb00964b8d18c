"""Which point a worker trains next: a queued trial, or a search's fresh draw, checked and claimed.

A grid queues every point and seed when the study is created (:func:`mgspec.study.storage.open_study`);
a search draws its points one at a time from its space (:func:`distribution` of each axis) with
Optuna's sampler. A drawn point that is not a valid spec, above ``max_weights`` or drawn before
is pruned with its reason and never trained; one that is new is claimed for the study's first
seed, and its other seeds are queued in the same step, under the study's lock
(:func:`mgspec.study.locks.locked`). A search stops after its ``trials`` points, or after
:data:`MAX_PRUNED` pruned draws in a row.
"""

from __future__ import annotations

import time

from mgspec.errors import SpecError
from mgspec.study import claims, points, require
from mgspec.study.model import Range, Study

#: Pruned draws in a row after which a search stops (its space has too few new valid points).
MAX_PRUNED = 200


def complete_seeds(study: Study, handle, log=print) -> int:
    """Queue the seeds a search point lacks; returns how many (hold :func:`mgspec.study.locks.locked`).

    A search point's first seed is drawn and its other seeds queued in one step under the lock;
    a worker killed in between (``kill -9``, a lost node) left the rest unqueued.
    """
    if not study.is_search or study.model.seeds == 1:
        return 0
    state = require("optuna").trial.TrialState
    first, seeds, params = study.model.seed, {}, {}
    for t in handle.get_trials(deepcopy=False):  # a pruned draw has no seed: it claimed nothing
        if "seed" not in t.user_attrs or "point" not in t.user_attrs:
            continue
        seeds.setdefault(t.user_attrs["point"], set()).add(t.user_attrs["seed"])
        if t.user_attrs["seed"] == first and t.state != state.PRUNED:
            params.setdefault(t.user_attrs["point"], claims.params(t))
    queued = 0
    for point, values in params.items():
        for seed in sorted(set(range(first + 1, first + study.model.seeds)) - seeds[point]):
            handle.enqueue_trial(values, user_attrs={"seed": seed, "point": point})
            queued += 1
    if queued:
        log(f"queued {queued} seeds of search points whose worker stopped before queueing them")
    return queued


def counted(study: Study, handle) -> tuple[int, int]:
    """A search's draws so far that count towards ``trials``, and how many draws in a row
    (since the last that counts) were pruned."""
    state = require("optuna").trial.TrialState
    trials = handle.get_trials(deepcopy=False)
    counts = [
        t
        for t in trials
        if t.state != state.PRUNED and t.user_attrs.get("seed") == study.model.seed and "retry_of" not in t.user_attrs
    ]
    last = max((t.number for t in counts), default=-1)
    in_a_row = sum(1 for t in trials if t.number > last and t.state == state.PRUNED and not t.user_attrs.get("spare"))
    return len(counts), in_a_row


def left_to_train(study: Study, handle) -> int:
    """Trials a run may still train: queued ones, those whose worker is gone, and a search's undrawn."""
    state = require("optuna").trial.TrialState
    trials = handle.get_trials(deepcopy=False)
    waiting = sum(1 for t in trials if t.state == state.WAITING)
    gone = sum(1 for t in trials if t.state == state.RUNNING and "seed" in t.user_attrs and claims.stale(t))
    undrawn = max(0, study.model.search.trials - counted(study, handle)[0]) if study.is_search else 0
    return waiting + gone + undrawn * study.model.seeds


def exhausted(study: Study, handle) -> str | None:
    """Why a search stopped short of its ``trials`` (None when it did not)."""
    if not study.is_search:
        return None
    drawn, in_a_row = counted(study, handle)
    if drawn >= study.model.search.trials or in_a_row < MAX_PRUNED:
        return None
    return (
        f"the search stopped after {in_a_row} draws in a row were pruned: {drawn} of its "
        f"{study.model.search.trials} points drawn (its space has too few new valid points"
        + (f" under max_weights {study.model.search.max_weights:,})" if study.model.search.max_weights else ")")
    )


def next_trial(study: Study, handle):
    """The next trial to run, or None when the study has none left."""
    state = require("optuna").trial.TrialState
    waiting = handle.get_trials(deepcopy=False, states=(state.WAITING,))
    if not waiting and not study.is_search:
        return None
    if not waiting:
        drawn, in_a_row = counted(study, handle)
        if drawn >= study.model.search.trials or in_a_row >= MAX_PRUNED:
            return None
    trial = handle.ask()
    trial.set_user_attr("owner", claims.owner())
    trial.set_user_attr("heartbeat", time.time())  # alive from the start (not the start's clock, a local time)
    return trial


def distribution(axis):
    """The Optuna distribution an axis draws from."""
    dists = require("optuna").distributions
    if not isinstance(axis, Range):
        return dists.CategoricalDistribution(axis)
    if axis.integer:
        return dists.IntDistribution(int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
    return dists.FloatDistribution(axis.low, axis.high, step=axis.step, log=axis.log)


def describe(dist) -> str:
    """An Optuna distribution in words: ``integers 2 to 4 in steps of 1``, ``one of [1, 2]``."""
    name = type(dist).__name__
    if name == "CategoricalDistribution":
        return f"one of {list(dist.choices)}"
    kind = "integers" if name == "IntDistribution" else "decimals"
    how = " on a log scale" if dist.log else f" in steps of {dist.step:g}" if dist.step is not None else ""
    return f"{kind} {dist.low:g} to {dist.high:g}{how}"


def check_drawn(study: Study, handle) -> None:
    """Refuse a search whose earlier trials drew an axis from another distribution.

    A range is of integers when low, high and step are written as integers (``2``), of decimals
    when one is written with a point (``2.0``); a study made by a version of mgspec that read
    ranges otherwise cannot draw again (Optuna refuses a parameter that changes kind).
    """
    if not study.is_search:
        return
    compatible = require("optuna").distributions.check_distribution_compatibility
    before = {}
    for t in handle.get_trials(deepcopy=False):
        for path, dist in t.distributions.items():
            before.setdefault(path, dist)
    for path, axis in study.model.axes.items():
        if path not in before:
            continue
        was, now = before[path], distribution(axis)
        try:
            compatible(was, now)
        except ValueError:
            kinds = {type(was).__name__, type(now).__name__} == {"IntDistribution", "FloatDistribution"}
            raise SpecError(
                f"the study drew {path} as {describe(was)}; this file draws it as {describe(now)}",
                study.locate("search", "space", path),
                hint="write the range as the study drew it (2 draws integers, 2.0 decimals), "
                "or give the study another name and --out"
                if kinds
                else "give the study another name and --out",
            ) from None


def suggest(study: Study, trial) -> dict:
    """One value per axis, drawn by the trial's sampler from the axis's :func:`distribution`."""
    params = {}
    for path, axis in study.model.axes.items():
        d = distribution(axis)
        try:
            if not isinstance(axis, Range):
                params[path] = trial.suggest_categorical(path, axis)
            elif axis.integer:
                params[path] = trial.suggest_int(path, d.low, d.high, step=d.step, log=d.log)
            else:
                params[path] = trial.suggest_float(path, d.low, d.high, step=d.step, log=d.log)
        except ValueError as exc:  # Optuna refused the axis (drawn from another distribution before)
            raise ValueError(f"{path}: {exc}") from None
    return params


def _prune(handle, trial, reason: str, **attrs) -> str:
    for name, value in {"reason": reason, **attrs}.items():
        trial.set_user_attr(name, value)
    handle.tell(trial, state=require("optuna").trial.TrialState.PRUNED)
    return "pruned"


def draw(study: Study, handle, trial, data_dir, device: str) -> tuple[dict, int] | str:
    """The trial's parameters and seed, checked (a search's fresh draw claimed); or ``"pruned"``."""
    try:
        params = suggest(study, trial)
    except ValueError as exc:  # Optuna refused the space (a study made when a range was of another kind)
        reason = f"{type(exc).__name__}: {exc}"
        _prune(handle, trial, f"cannot draw its parameters: {reason}")  # a draw, not a failed training
        raise SpecError(
            f"trial {trial.number}: cannot draw its parameters: {reason}",
            hint="a range draws integers when written with whole numbers (2), decimals with a point (2.0)",
        ) from None
    seed = trial.user_attrs.get("seed")
    if seed is None and not study.is_search:
        return _prune(handle, trial, "nothing left to run", spare=True)
    trial.set_user_attr("point", points.key(params))
    try:
        weights, macs = points.check(study, params, data_dir, device)
    except SpecError as exc:
        return _prune(handle, trial, f"not a valid spec: {exc}")
    trial.set_user_attr("weights", weights)
    trial.set_user_attr("macs", macs)
    limit = study.model.search.max_weights if study.is_search else None
    if limit is not None and weights > limit:
        return _prune(handle, trial, f"{weights:,} weights, above max_weights {limit:,}")
    if seed is None:  # a fresh draw of a search (under the study's lock)
        drawn, _ = counted(study, handle)
        if drawn >= study.model.search.trials:
            return _prune(handle, trial, "the search has all its trials", spare=True)
        earlier = _same_point(handle, trial, points.key(params), study.model.seed)
        if earlier is not None:
            return _prune(handle, trial, f"the same point as trial {earlier}")
        seed = study.model.seed
        trial.set_user_attr("seed", seed)
        for other in range(seed + 1, seed + study.model.seeds):
            handle.enqueue_trial(params, user_attrs={"seed": other, "point": points.key(params)})
    return params, seed


def _same_point(handle, trial, key: str, first_seed: int) -> int | None:
    state = require("optuna").trial.TrialState
    for other in handle.get_trials(deepcopy=False):
        if other.number != trial.number and other.user_attrs.get("point") == key and other.state != state.PRUNED:
            if other.user_attrs.get("seed") == first_seed:
                return other.number
    return None
