"""Studies: sweeps, seeds and Pareto searches over specs, run as Optuna studies.

A study file (:mod:`mgspec.study.model`) names a spec, a dataset, training options, seeds and
a grid or a search space (:mod:`mgspec.study.points`). Its trials live in an Optuna storage
(a journal file by default, or PostgreSQL; :mod:`mgspec.study.storage`), are trained as
ordinary run directories by workers (:mod:`mgspec.study.worker`) on this machine or as a Slurm
job array (:mod:`mgspec.study.executors`), and are summarised by :mod:`mgspec.study.report`.
Optuna, submitit and psycopg come with the ``study`` extra (``pip install mgspec[study]``).
"""

from __future__ import annotations

from mgspec.errors import SpecError
from mgspec.study.model import Study, StudyFile, load_study

__all__ = ["Study", "StudyFile", "load_study", "require"]

EXTRA = "pip install 'mgspec[study]'"


def require(module: str = "optuna"):
    """Import an optional dependency of studies, or a clear error naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError(f"studies need {module}, which is not installed", hint=EXTRA) from None
