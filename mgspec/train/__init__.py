"""Training side: official dataset formats, the paper's recipe, runs, evaluation and sweeps."""

from mgspec.train.data import DATASETS, DataError, load
from mgspec.train.recipe import TrainConfig, recipe
from mgspec.train.trainer import aggregate, evaluate, prepare, train

__all__ = [
    "DATASETS",
    "DataError",
    "TrainConfig",
    "aggregate",
    "evaluate",
    "load",
    "prepare",
    "recipe",
    "train",
]
