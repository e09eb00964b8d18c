"""The data types of the paper registry: a table row, what the paper prints, and the notes.

:mod:`mgspec.paper_tables` holds the rows themselves and :mod:`mgspec.paper` the registry
built from them; both re-use these types and the shared override tuples.
Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mgspec import registry

#: The kinds of documented discrepancy a row's note can be.
KINDS = ("canonical", "one-bn-per-step", "swapped-label", "slip", "no-variant")

#: The paper's one-normalisation-per-smoothing-step variant (coarse channel levels keep two).
ONE_BN = ("layers.norms_per_step=1", "channel_grid.norms_per_step=2")
ONE_BN_MGNET = ("layers.norms_per_step=1",)
ONE_CHANNEL = ("input.channels=1",)
CIFAR100 = ("classes=100",)


@dataclass(frozen=True)
class Stated:
    """A configuration whose exact count a note states: a label, the spec and overrides, the count."""

    label: str
    spec: str
    overrides: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class Note:
    """Why a row's printed count is what it is, when it is not simply our canonical count."""

    kind: str
    text: str
    stated: tuple[Stated, ...] = ()


@dataclass(frozen=True)
class Published:
    test: float  # mean test accuracy, percent
    std: float  # its standard deviation over seeds
    train: float  # train accuracy, percent


@dataclass(frozen=True)
class Row:
    table: str
    label: str  # the row's id within its table
    model: str  # the model as the paper names it
    spec: str  # a built-in spec's name (mgspec/specs/<spec>.yaml)
    overrides: tuple[str, ...]
    dataset: str  # cifar10, cifar100 or fashionmnist
    printed_k: int  # the paper's weight count, in thousands
    published: Published
    note: Note | None = None
    recipe: tuple[tuple[str, float | int | str], ...] = field(default=())  # recipe options that differ

    @property
    def id(self) -> str:
        return f"{self.table}/{self.label}"

    @property
    def spec_path(self) -> Path:
        return registry.spec_path(self.spec)

    def command(self) -> str:
        return f"mgspec reproduce {self.id} --data-dir DATA --seeds 3"
