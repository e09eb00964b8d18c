"""Stage 2: plain data -> a validated, frozen :class:`Spec`.

One language for every family: a *resolution grid* (levels of channels and steps, with a
block kind: ResNet basic blocks or MgNet smoothing steps) and an optional *channel grid*
(the in-channel multigrid hierarchy of MGIC / MGiaD) that applies to every level unless a
level overrides it. The family is never declared; it follows from the structure
(:attr:`Spec.family`).

Invariants: models are frozen and reject unknown fields; every pydantic error is turned into
a :class:`~mgspec.errors.SpecError` pointing at the file line of the offending value, with a
"did you mean" hint for misspelled keys. Sizes are bounded (the ``MAX_*`` limits), numbers are
finite, names cannot collide with each other, with torch module attributes or with Python
modules, and free text holds printable characters only, so every spec that validates lowers,
counts and compiles quickly and safely. Channel arithmetic that depends on several fields
(group sizes dividing widths, coarsest widths) is checked by :mod:`mgspec.lower`, which knows
the hierarchy.
"""

from __future__ import annotations

import keyword
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mgspec.cycles import smoothing_steps
from mgspec.layers import ACTIVATIONS, NORMS
from mgspec.spec_grids import ChannelGrid, MgNetGrid, ResNetGrid, ResolutionGrid, merge_level_channel_grids
from mgspec.spec_grids import Level as Level
from mgspec.spec_limits import (
    _MODULES,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_DESCRIPTION,
    MAX_KERNEL,
    MAX_NAME,
    MAX_SMOOTHING_STEPS,
    OddKernel,
    Positive,
    Side,
    _Located,
    _Model,
    _printable,
)
from mgspec.spec_limits import CONTAINER_ATTRIBUTES as CONTAINER_ATTRIBUTES
from mgspec.spec_limits import MAX_INPUT_SIZE as MAX_INPUT_SIZE
from mgspec.spec_limits import MAX_LEVELS as MAX_LEVELS
from mgspec.spec_limits import MAX_SMOOTHING as MAX_SMOOTHING
from mgspec.spec_limits import MAX_STEPS as MAX_STEPS
from mgspec.spec_limits import NonNegative as NonNegative


class Input(_Model):
    """The image the network classifies."""

    channels: Positive = Field(3, le=MAX_CHANNELS, description="Input channels (3 for CIFAR, 1 for (Fashion)MNIST).")
    size: Side | Annotated[list[Side], Field(min_length=2, max_length=2)] = Field(
        32, description="Height and width in pixels (one number for a square image, or [height, width])."
    )

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.size, self.size) if isinstance(self.size, int) else (self.size[0], self.size[1])


class Stem(_Model):
    """conv(kernel x kernel, input -> c_1) + BN + ReLU; its output is f_1 (MgNet) or x (ResNet)."""

    kernel: OddKernel = Field(3, description="Stem convolution kernel size (odd).")
    stride: Positive = Field(1, le=MAX_KERNEL, description="Stem convolution stride (2 or 4 for large images).")
    maxpool: bool = Field(False, description="A 3x3 stride-2 max-pool after the stem (ImageNet-style).")


class Layers(_Model):
    """The layer choices of every block (layers as data); the defaults are the paper's."""

    norm: Literal[tuple(NORMS)] = Field(  # type: ignore[valid-type]
        "batch",
        description="Normalisation after convolutions: "
        + ", ".join(f"{k} ({n.title if n else 'no normalisation'})" for k, n in NORMS.items())
        + "; a grouped one takes norm_groups groups.",
    )
    norm_groups: Positive = Field(
        8, le=MAX_CHANNELS, description="Groups of GroupNorm (with norm: group); must divide every width."
    )
    activation: Literal[tuple(ACTIVATIONS)] = Field(  # type: ignore[valid-type]
        "relu", description="The activation function."
    )
    kernel: OddKernel = Field(3, description="Kernel size of A and B (MgNet, MGiaD) and of ResNet's convs (odd).")
    norms_per_step: Literal[1, 2] = Field(
        2,
        description="Normalisations per smoothing step: 2 is u + act(BN(B(act(BN(f - A u))))); "
        "1 keeps the one after B, u + act(BN(B(act(f - A u)))) (the paper's Tables III, IV, VI).",
    )


class Head(_Model):
    """Global average pooling, then a linear classifier."""

    bias: bool = Field(True, description="Whether the classifier has a bias.")


class Spec(_Model):
    """A whole network."""

    name: str = Field(max_length=MAX_NAME, description="Identifier; names the generated file and model class.")
    description: str = Field("", max_length=MAX_DESCRIPTION, description="Free text shown by `mgspec list`.")
    input: Input = Field(Input(), description="Input image.")
    classes: Positive = Field(le=MAX_CLASSES, description="Number of output classes.")
    width: Annotated[float, Field(gt=0, le=MAX_CHANNELS, allow_inf_nan=False)] = Field(
        1, description="Channel width multiplier lambda: scales every level's channels (not coarsest)."
    )
    stem: Stem = Field(Stem(), description="Stem convolution.")
    resolution_grid: ResolutionGrid = Field(description="The resolution levels and their block kind.")
    channel_grid: ChannelGrid | None = Field(
        None, description="In-channel multigrid applied to every level (MGIC with ResNet blocks, MGiaD with MgNet)."
    )
    head: Head = Field(Head(), description="Classifier.")
    layers: Layers = Field(Layers(), description="Normalisation, activation and kernel choices for every block.")

    @model_validator(mode="before")
    @classmethod
    def _merge_level_channel_grids(cls, data: Any) -> Any:
        """A level's channel_grid names the fields it changes; the others come from the spec's."""
        return merge_level_channel_grids(data)

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not v.isidentifier() or keyword.iskeyword(v) or not v.isascii():
            raise ValueError(f"{v!r} is not a valid name (ASCII letters, digits, '_'; not a keyword)")
        if v.lower() in _MODULES or (v.startswith("__") and v.endswith("__")):
            raise ValueError(f"{v!r} is reserved: a file {v}.py would shadow a Python module of that name")
        return v

    @field_validator("description", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return _printable(v) if isinstance(v, str) else v

    @field_validator("width", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("must be a number")
        return v

    @model_validator(mode="after")
    def _options_that_mean_something(self) -> Spec:
        """Refuse a choice this network could not use, instead of ignoring it."""
        grid = self.resolution_grid
        grouped = [k for k, n in NORMS.items() if n and n.grouped]
        if "norm_groups" in self.layers.model_fields_set and self.layers.norm not in grouped:
            raise _Located(f"norm_groups only applies with norm: {' or '.join(grouped)}", ("layers", "norm_groups"))
        has_channel_grid = any(self.level_channel_grid(i) for i in range(len(grid.levels)))
        if isinstance(grid, ResNetGrid) and not has_channel_grid and self.layers.norms_per_step != 2:
            raise _Located(
                "a ResNet has no smoothing steps: norms_per_step applies to MgNet, MGiaD and MGIC",
                ("layers", "norms_per_step"),
            )
        if "norms_per_step" in self.layers.model_fields_set and self.layers.norm == "none":
            raise _Located(
                "norms_per_step only applies with a normalisation (norm: batch or group)", ("layers", "norms_per_step")
            )
        if self.layers.norm == "none" and self.channel_grid and self.channel_grid.norms_per_step is not None:
            raise _Located(
                "norms_per_step only applies with a normalisation (norm: batch or group)",
                ("channel_grid", "norms_per_step"),
            )
        if isinstance(grid, MgNetGrid) and grid.level1_transfers and grid.restriction == "avgpool":
            raise _Located(
                "level1_transfers creates R and Pi, which average-pool restriction does not have",
                ("resolution_grid", "level1_transfers"),
            )
        if isinstance(grid, MgNetGrid) and grid.share_across:
            shared = set(self.channel_grid.share if self.channel_grid else grid.share)
            if not set(grid.share_across) <= shared:
                where = "channel_grid.share" if self.channel_grid else "resolution_grid.share"
                raise _Located(
                    f"share_across lists {sorted(set(grid.share_across) - shared)}, which {where} does not share",
                    ("resolution_grid", "share_across"),
                )
            widths = [level.channels for level in grid.levels]
            if all(a != b for a, b in zip(widths, widths[1:], strict=False)):
                raise _Located(
                    "share_across shares between consecutive levels of equal width, and no two have one",
                    ("resolution_grid", "share_across"),
                )
        return self

    @model_validator(mode="after")
    def _names_and_size(self) -> Spec:
        levels = self.resolution_grid.levels
        seen: dict[str, int] = {}
        for i in range(len(levels)):
            name = self.level_name(i)
            if name in seen:
                raise _Located(
                    f"level name {name!r} is used by level {seen[name] + 1} too",
                    ("resolution_grid", "levels", i, "name" if levels[i].name else "channels"),
                )
            seen[name] = i
        work = 0
        for i, level in enumerate(levels):
            scaled = level.channels * self.width
            if scaled > MAX_CHANNELS:
                raise _Located(
                    f"width {self.width:g} x {level.channels} channels = {scaled:g} exceeds the limit of "
                    f"{MAX_CHANNELS:,} channels",
                    ("resolution_grid", "levels", i, "channels"),
                )
            work += level.steps * self._vcycle_steps(i, int(scaled))
        if work > MAX_SMOOTHING_STEPS:
            raise _Located(
                f"{work:,} smoothing steps in all exceed the limit of {MAX_SMOOTHING_STEPS:,}",
                ("resolution_grid", "levels"),
            )
        return self

    def _vcycle_steps(self, index: int, width: int) -> int:
        """Smoothing steps of one step of level ``index``: one, or those of its channel cycle,
        counted from the cycle table the lowering declares from (:mod:`mgspec.cycles`)."""

        grid = self.level_channel_grid(index)
        return 1 if grid is None else smoothing_steps(grid, grid.widths(width))

    @cached_property
    def family(self) -> str:
        grid = self.resolution_grid
        has_channel_grid = any(self.level_channel_grid(i) for i in range(len(grid.levels)))
        if isinstance(grid, ResNetGrid):
            return "mgic" if has_channel_grid else "resnet"
        if has_channel_grid:
            return "mgiad"
        return "mgnet_grouped" if grid.group_size else "mgnet"

    def level_name(self, index: int) -> str:
        return self.resolution_grid.levels[index].name or f"l{index + 1}"

    def level_channel_grid(self, index: int) -> ChannelGrid | None:
        level = self.resolution_grid.levels[index]
        if "channel_grid" in level.model_fields_set:
            return level.channel_grid
        return self.channel_grid


# The error-locating validation entry point lives in its own module; re-exported here.
from mgspec.spec_validation import validate  # noqa: E402, F401
