"""The grids of a spec: the resolution grid (ResNet or MgNet levels) and the channel grid (SiC).

A level may override the spec's channel grid field by field; :func:`merge_level_channel_grids`
completes such a level's grid from the spec's before validation. :mod:`mgspec.schema`
re-exports these models; the JSON Schema names them as it always did.
"""

from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from mgspec.cycles import CYCLES
from mgspec.spec_limits import (
    CONTAINER_ATTRIBUTES,
    MAX_CHANNELS,
    MAX_LEVELS,
    MAX_NAME,
    MAX_SMOOTHING,
    MAX_STEPS,
    NonNegative,
    Positive,
    _Model,
)


class ChannelGrid(_Model):
    """The in-channel multigrid hierarchy of one resolution level (SiC V-cycle).

    Channel level widths halve from the level's width while the half is at least
    ``coarsest``; every level but the coarsest uses grouped A/B convolutions.
    """

    group_size: Positive = Field(
        le=MAX_CHANNELS, description="Channels per group of the grouped A/B convolutions (gs)."
    )
    coarsest: Positive = Field(
        le=MAX_CHANNELS, description="Smallest width of the fully coupled coarsest channel level (cK)."
    )
    pre_smoothing: Positive = Field(
        1, le=MAX_SMOOTHING, description="Smoothing steps before the coarse correction (eta_pre, >= 1)."
    )
    post_smoothing: NonNegative = Field(
        1, le=MAX_SMOOTHING, description="Smoothing steps after the coarse correction (eta_post)."
    )
    norms_per_step: Literal[1, 2] | None = Field(
        None,
        description="Normalisations per smoothing step on the coarser channel levels and in the coarse solve; "
        "null: layers.norms_per_step. The finest level's pre/post-smoothing follows layers.norms_per_step.",
    )
    share: list[Literal["A", "B"]] = Field(
        ["A", "B"], description="Operators shared by every smoothing step of a channel level; the rest per step."
    )
    cycle: Literal[tuple(CYCLES)] = Field(  # type: ignore[valid-type]  # the cycle table's shapes
        "V", description="Cycle shape: V visits the coarser channel level once, W twice (the second from the first)."
    )
    transfers: Literal["pairwise", "dense"] = Field(
        "pairwise",
        description="Channel transfers R_k, Pi_k, P_k: 1x1 convs mixing `coarsening` channels each, or dense 1x1.",
    )
    coarsening: Annotated[int, Field(strict=True, ge=2, le=MAX_CHANNELS)] = Field(
        2, description="Width ratio between consecutive channel levels."
    )

    def widths(self, width: int) -> list[int]:
        """The channel levels' widths for a resolution level of ``width`` channels: divided by
        ``coarsening`` while the result is whole and at least ``coarsest``."""
        widths = [width]
        while widths[-1] % self.coarsening == 0 and widths[-1] // self.coarsening >= self.coarsest:
            widths.append(widths[-1] // self.coarsening)
        return widths

    @field_validator("share")
    @classmethod
    def _unique_ops(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists an operator twice")
        return v


class Level(_Model):
    """One resolution level."""

    name: str | None = Field(
        None,
        max_length=MAX_NAME,
        description="Name used in state_dict keys and generated code; defaults to l1, l2, ...",
    )
    channels: Positive = Field(le=MAX_CHANNELS, description="Channels c_l before the width multiplier.")
    steps: Positive = Field(
        le=MAX_STEPS,
        description="MgNet smoothing steps, ResNet blocks, or (MgNet with a channel grid) channel cycles.",
    )
    channel_grid: ChannelGrid | None = Field(
        None,
        description="Overrides, field by field, the spec's channel_grid for this level (the fields it names; "
        "the rest are inherited); null switches it off here.",
    )

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str | None) -> str | None:
        if v is not None and (not v.isidentifier() or keyword.iskeyword(v) or not v.isascii()):
            raise ValueError(f"{v!r} is not a valid name (ASCII letters, digits, '_'; not a keyword)")
        if v is not None and (v in CONTAINER_ATTRIBUTES or v.startswith("_")):
            raise ValueError(f"{v!r} is reserved: torch modules have an attribute of that name or prefix")
        return v


class _Grid(_Model):
    levels: list[Level] = Field(
        min_length=1,
        max_length=MAX_LEVELS,
        description="Resolution levels, finest first; each after the first halves the resolution.",
    )


class ResNetGrid(_Grid):
    """Stages of ResNet basic blocks; the first block of every stage after the first has stride 2."""

    block: Literal["resnet_basic"] = Field(description="Block kind.")
    shortcut: Literal["projection", "option_a"] = Field(
        "projection",
        description="Shortcut where the shape changes: 1x1 conv + BN, or parameter-free subsample and zero-pad.",
    )


class MgNetGrid(_Grid):
    """MgNet: smoothing steps u <- u + relu(BN(B(relu(BN(f - A u))))) per level, FAS transfers between levels."""

    block: Literal["mgnet"] = Field(description="Block kind.")
    share: list[Literal["A", "B"]] = Field(
        ["A", "B"],
        description="Operators shared over all steps of a level: [A, B] is MgNet_{A,B}, [A] is MgNet_A.",
    )
    group_size: Annotated[int, Field(strict=True, gt=0, le=MAX_CHANNELS)] | None = Field(
        None,
        description="Grouped A/B convolutions with this many channels per group (grouped MgNet; with a channel "
        "grid, the coarsest channel level's); null is dense.",
    )
    level1_transfers: bool = Field(
        False,
        description="Create R and Pi on level 1 too (never used), as the paper's published counts do; "
        "the shipped paper specs set it to true.",
    )
    restriction: Literal["depthwise", "avgpool", "dense"] = Field(
        "depthwise",
        description="R and Pi between resolution levels: learned depthwise-style strided 3x3 convs (the paper's), "
        "2x2 average pooling with channels repeated (no weights), or dense strided 3x3 convs.",
    )
    share_across: list[Literal["A", "B"]] = Field(
        [],
        description="Shared operators that consecutive levels of equal width also share (MgNet: the level's A/B; "
        "MGiaD: every channel level's A_k/B_k).",
    )

    @field_validator("share", "share_across")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists an operator twice")
        return v


ResolutionGrid = Annotated[ResNetGrid | MgNetGrid, Field(discriminator="block")]


def merge_level_channel_grids(data: Any) -> Any:
    """Spec data with every level's ``channel_grid`` mapping completed from the spec's ``channel_grid``
    (the level's fields win); ``data`` itself is not changed. An invalid global grid is left to report
    its own error where it is written."""
    if not isinstance(data, dict):
        return data
    base, grid = data.get("channel_grid"), data.get("resolution_grid")
    levels = grid.get("levels") if isinstance(grid, dict) else None
    if not isinstance(base, dict) or not isinstance(levels, list):
        return data
    try:
        ChannelGrid.model_validate(base)
    except ValidationError:
        return data
    merged = [
        {**level, "channel_grid": {**base, **level["channel_grid"]}}
        if isinstance(level, dict) and isinstance(level.get("channel_grid"), dict)
        else level
        for level in levels
    ]
    return {**data, "resolution_grid": {**grid, "levels": merged}}
