"""The limits and naming rules every spec obeys, shared by the models of :mod:`mgspec.schema`.

The ``MAX_*`` limits (docs/spec-language.md, "Limits") keep every spec that validates quick to
lower, count and build; the name rules keep generated code and state_dict keys from colliding
with Python modules or torch attributes; free text is printable; every model is frozen and
rejects unknown fields. :mod:`mgspec.schema` re-exports the public names.
"""

from __future__ import annotations

import sys
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
