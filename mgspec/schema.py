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
import sys
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mgspec.cycles import CYCLES, smoothing_steps
from mgspec.layers import ACTIVATIONS, NORMS

Positive = Annotated[int, Field(strict=True, gt=0)]
NonNegative = Annotated[int, Field(strict=True, ge=0)]

# Limits (docs/spec-language.md, "Limits"). They are far above any published network and keep
# every spec that validates quick to lower, count and build: graph size grows with the
# smoothing steps, tensor sizes with the channels.
#: Resolution levels (each halves the resolution: 12 take 4096 pixels down to 1).
MAX_LEVELS = 12
#: Steps (blocks) of one level.
MAX_STEPS = 256
#: Smoothing steps of the whole network, each step of every channel V-cycle counted.
MAX_SMOOTHING_STEPS = 2048
#: Channels of any level after the width multiplier; also bounds group sizes and input channels.
MAX_CHANNELS = 16384
#: Pre- and post-smoothing steps of a channel V-cycle.
MAX_SMOOTHING = 16
#: Input height and width in pixels.
MAX_INPUT_SIZE = 4096
#: Output classes.
MAX_CLASSES = 100_000
#: Stem kernel size.
MAX_KERNEL = 15
#: Characters of a spec or level name, and of a description.
MAX_NAME, MAX_DESCRIPTION = 64, 1000

Side = Annotated[int, Field(strict=True, gt=0, le=MAX_INPUT_SIZE)]


def _odd(v: int) -> int:
    if v % 2 == 0:
        raise ValueError("must be odd so that 'same' padding keeps the size")
    return v


#: A kernel size: odd, so that 'same' padding keeps the size.
OddKernel = Annotated[int, Field(strict=True, gt=0, le=MAX_KERNEL), AfterValidator(_odd)]

#: Spec names that would shadow a module the generated ``<name>.py`` (or Python) imports.
_MODULES = frozenset(sys.stdlib_module_names) | {
    "torch", "mgspec", "numpy", "typing_extensions", "sympy", "networkx", "jinja2", "filelock", "fsspec", "mpmath",
    "setuptools", "triton", "pkg_resources",
}  # fmt: skip


#: The public attributes of a torch module container (``nn.ModuleDict``, ``nn.Module``, an
#: instance's too: ``training``): a level of that name could not be a key of ``levels``. Written
#: out so that validating a spec needs no torch; tests/test_bad_input.py checks it against torch.
#: (Names starting with ``_`` are refused anyway.)
CONTAINER_ATTRIBUTES = frozenset(
    {
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "clear",
    "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "items", "keys", "load_state_dict",
    "modules", "mtia", "named_buffers", "named_children", "named_modules", "named_parameters", "parameters", "pop",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter", "register_state_dict_post_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule", "share_memory",
    "state_dict", "to", "to_empty", "train", "training", "type", "update", "values", "xpu", "zero_grad",
    }
)  # fmt: skip


class _Located(ValueError):
    """A cross-field problem raised by a model validator, located at ``path`` below the model."""

    def __init__(self, message: str, path: tuple) -> None:
        super().__init__(message)
        self.path = path


def _printable(v: str) -> str:
    """Refuse control (tabs, newlines too), format (bidi overrides) and surrogate characters: text goes
    into generated code and one-line listings."""
    for char in v:
        if not char.isprintable():
            raise ValueError(f"character U+{ord(char):04X} is not allowed")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


# The error-locating validation entry point lives in its own module; re-exported here.
from mgspec.spec_validation import validate  # noqa: E402, F401
