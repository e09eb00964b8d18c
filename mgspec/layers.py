"""The layer choices a spec may make, as data: one entry per normalisation and per activation.

Each entry says everything mgspec needs to know about the layer: the IR op (and, for a norm,
the weight-slot kind) it becomes, the symbol docstrings and equation comments write for it,
its module or function as the backends build or call it, its weight count, and the facts the
passes rely on (an activation maps 0 to 0; BatchNorm is not pure). The schema's choices are
these tables' keys; :mod:`mgspec.ops` turns every entry into an operator; the lowering
receives the resolved entries once (:func:`resolve`). Adding a choice is one entry here.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mgspec.expr import Call, Num


@dataclass(frozen=True)
class Norm:
    """A normalisation after a convolution, with its own weights (one slot per application site).

    ``op`` is the IR op and slot kind, and the attribute prefix of its modules (``bn1``,
    ``gn_R``); ``symbol`` is how docstrings write it; ``title`` how messages name it;
    ``operator`` the weight group counts report (``BN``); ``ctor`` the module's constructor
    (evaluated by the runtime, printed by codegen); ``weights`` its weight count for ``c``
    channels; ``grouped`` whether it takes ``layers.norm_groups``; ``pure`` whether two
    applications to one value are one value (BatchNorm updates running statistics each time);
    ``single`` the message detail when a statistic would see a single value, else None.
    """

    op: str
    symbol: str
    title: str
    operator: str
    ctor: Callable[[object], Call]
    weights: Callable[[int], int]
    grouped: bool
    pure: bool
    single: Callable[[object, int, int], str | None]


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: ``function`` is the torch callable by qualified name and
    ``template`` its source; ``keeps_zero`` says f(0) = 0, which zero folding relies on."""

    op: str
    symbol: str
    function: str
    template: str
    keeps_zero: bool


def _channels(s) -> Num:
    return Num(s.cout, ("channels", "cout"))


def _never(s, h: int, w: int) -> str | None:
    return None


def _group_single(s, h: int, w: int) -> str | None:
    if s.cout // s.groups * h * w >= 2:
        return None
    return f"{s.groups} groups of {s.cout} channels on a {h}x{w} map"


def _layer_single(s, h: int, w: int) -> str | None:
    return None if s.cout >= 2 else f"{s.cout} channel at each pixel"


#: ``layers.norm`` -> the normalisation (None: no normalisation).
NORMS: dict[str, Norm | None] = {
    "batch": Norm(
        "bn", "bn", "BatchNorm", "BN", lambda s: Call("nn.BatchNorm2d", ((None, _channels(s)),)),
        lambda c: 2 * c, grouped=False, pure=False, single=_never,
    ),
    "group": Norm(
        "gn", "gn", "GroupNorm", "GN", lambda s: Call("nn.GroupNorm", ((None, s.groups), (None, _channels(s)))),
        lambda c: 2 * c, grouped=True, pure=True, single=_group_single,
    ),
    "layer": Norm(
        "ln", "ln", "LayerNorm", "LN", lambda s: Call("LayerNorm2d", ((None, _channels(s)),)),
        lambda c: 2 * c, grouped=False, pure=True, single=_layer_single,
    ),
    "none": None,
}  # fmt: skip

#: ``layers.activation`` -> the activation.
ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", "relu", "torch.nn.functional.relu", "F.relu({0})", keeps_zero=True),
    "gelu": Activation("gelu", "gelu", "torch.nn.functional.gelu", "F.gelu({0})", keeps_zero=True),
    "silu": Activation("silu", "silu", "torch.nn.functional.silu", "F.silu({0})", keeps_zero=True),
    "hardswish": Activation(
        "hardswish", "hardswish", "torch.nn.functional.hardswish", "F.hardswish({0})", keeps_zero=True
    ),
}


@dataclass(frozen=True)
class LayerFns:
    """The layer choices of one spec, resolved once: what the lowering applies."""

    norm: Norm | None
    act: Activation
    groups: int  # of a grouped norm

    def norm_symbol(self) -> str:
        return self.norm.symbol if self.norm else ""


def resolve(layers) -> LayerFns:
    """The entries a spec's ``layers`` section chooses."""
    return LayerFns(NORMS[layers.norm], ACTIVATIONS[layers.activation], layers.norm_groups)
