"""Training one experiment over one or several seeds: what ``train`` and ``reproduce`` both call.

:func:`train_seeds` prepares and trains every seed's run directory (see :mod:`mgspec.runs` for
the layout), writes the parent's ``summary.json`` with the mean and standard deviation over
seeds, and turns Ctrl-C or SIGTERM into :class:`Interrupted`, which says where the run stopped
and the command that resumes it. Under torchrun only rank 0 writes and reports.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mgspec import runs
from mgspec.load import Source
from mgspec.train import trainer
from mgspec.train.guards import Terminated, sigterm_as_interrupt
from mgspec.train.recipe import TrainConfig


@dataclass
class Outcome:
    """What a training produced: one summary per seed, and their aggregate for several seeds."""

    directory: Path
    summaries: list[dict]
    aggregate: dict | None = None
    adapted: list[str] = field(default_factory=list)


class Interrupted(Exception):
    """A run stopped by Ctrl-C (status 130) or SIGTERM (143); ``lines`` say how to resume it."""

    def __init__(self, lines: list[str], status: int) -> None:
        super().__init__("\n".join(lines))
        self.lines, self.status = lines, status


def main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train_seeds(
    source: str | Path | Source,
    overrides: Sequence[str],
    config: TrainConfig,
    directory: Path,
    *,
    seeds: int = 1,
    resume: bool = False,
    explicit: Sequence[str] = (),
    require_epochs_left: bool = False,
    experiment: dict | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    started: Callable[[trainer.Run], None] = lambda run: None,
) -> Outcome:
    """Train seeds ``config.seed`` .. ``config.seed + seeds - 1`` into ``directory`` (``seed-<N>`` for several).

    ``started(run)`` is called once the first run is prepared (user errors come before it).
    """
    run_dirs = runs.seed_dirs(directory, config.seed, seeds)
    outcome = Outcome(directory, [])
    current = None
    try:
        with sigterm_as_interrupt():
            for i, (seed, run_dir) in enumerate(run_dirs.items()):
                current = run_dir
                run = trainer.prepare(
                    source,
                    overrides,
                    dataclasses.replace(config, seed=seed),
                    run_dir,
                    resume=resume and (run_dir / runs.CONFIG).exists(),
                    explicit=explicit,
                    require_epochs_left=require_epochs_left,
                    experiment=experiment,
                )
                outcome.adapted = run.adapted
                if i == 0:
                    started(run)
                outcome.summaries.append(trainer.train(run, progress=progress))
    except KeyboardInterrupt as exc:
        trainer.finish_distributed(ok=False)
        status = 143 if isinstance(exc, Terminated) else 130
        raise Interrupted(_resume_lines(current, directory, config.seed, seeds), status) from None
    except BaseException:
        trainer.finish_distributed(ok=False)
        raise
    trainer.finish_distributed()
    if seeds > 1 and main_process():
        outcome.aggregate = runs.write_seed_summary(directory, outcome.summaries, experiment)
    return outcome


def _resume_lines(current: Path | None, directory: Path, seed: int, seeds: int) -> list[str]:
    """What an interrupted run prints: where it stopped and the command that continues it."""
    if not main_process() or current is None or not (current / runs.CONFIG).exists():
        return []
    try:
        total = runs.read_config(current / runs.CONFIG)["config"]["epochs"]
        done = trainer.finished_epochs(current)
    except runs.RunError:
        return []
    command = f"mgspec train --resume {shlex.quote(str(directory))} --epochs {total}"
    if seeds > 1:
        command += f" --seed {seed} --seeds {seeds}"
    return [
        f"interrupted: {current} stopped after epoch {done} of {total} (the checkpoint holds every finished epoch)",
        f"resume with: {command}",
    ]
