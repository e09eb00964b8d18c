"""The closed operator set: one frozen definition per IR op, read by every stage.

An :class:`Op` says how many operands the op takes, the kind of weight slot it applies (if
any), whether it is pure (two applications to the same operands are one value), whether it
keeps zeros (``zeros``: ``"source"`` makes them, ``"keeps"`` maps 0 to 0, ``"sum"`` and
``"difference"`` are the identity beside a zero operand) and channel counts, how it changes the
spatial size (a rule of :data:`SPATIAL`), what it costs in multiply-accumulates (a rule of
:data:`MACS`), the torch callable the runtime calls (by qualified name, with ``extra``
arguments after the operands), the source text codegen prints for it, and how the graph drawing
shapes it. :data:`SLOTS` describes each slot kind: its weight count and the one constructor
description both backends use. Verification, counting, the passes, both backends and the
drawing read these properties, never op names; the norms and activations come from
:mod:`mgspec.layers`, so a new layer choice is an entry there. An entry with a missing
property, or a rule that does not exist, fails at import. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from mgspec.expr import Call, Num
from mgspec.layers import ACTIVATIONS as ACTIVATION_CHOICES
from mgspec.layers import NORMS


@dataclass(frozen=True)
class Op:
    """One operator. ``template`` is the source of an application, a format string over the
    operands' text (``{0}``, ``{1}``; ``{p0}``, ``{p1}``: parenthesised unless atomic), the
    weights (``{slot}``) and channels (``{cin}``, ``{cout}``), or a function of those fields;
    ``infix`` marks a template whose result binds loosely (``a - b``). ``function`` is called
    as ``function(*operands, *extra)``, with ``cout`` last when ``with_cout``; a slot op calls
    its module instead, and ``input`` is never called."""

    name: str
    arity: int
    slot: str | None
    pure: bool
    zeros: str
    keeps_channels: bool
    spatial: str
    macs: str
    function: str
    template: str | Callable[[dict], str]
    draw: str  # "box" or "ellipse"
    extra: tuple = ()
    with_cout: bool = False
    infix: bool = False


@dataclass(frozen=True)
class SlotKind:
    """A kind of weight slot: its weight count and its module's constructor (both backends)."""

    name: str
    weights: Callable[[object], int]
    ctor: Callable[[object], Call]
    grouped: bool  # its groups must divide both channel counts


# -- spatial rules: (operand (channels, height, width) list, slot or None) -> (height, width) --


def _conv_out(size: int, s) -> int:
    pad = s.kernel // 2  # "same" padding: the only padding the convolutions use
    return (size + 2 * pad - s.kernel) // s.stride + 1


SPATIAL: dict[str, Callable[[list, object], tuple[int, int]]] = {
    "source": lambda ins, s: (0, 0),  # the input: the size asked for (verify supplies it)
    "same": lambda ins, s: ins[0][1:],
    "conv": lambda ins, s: (_conv_out(ins[0][1], s), _conv_out(ins[0][2], s)),
    "half": lambda ins, s: ((ins[0][1] + 1) // 2, (ins[0][2] + 1) // 2),  # every other pixel, or 2x2 windows (ceil)
    "pool3s2": lambda ins, s: ((ins[0][1] - 1) // 2 + 1, (ins[0][2] - 1) // 2 + 1),  # 3x3, stride 2, padding 1
    "global": lambda ins, s: (1, 1),
}

# -- MACs rules: (node, slot or None, output (channels, height, width)) -> multiply-accumulates --

MACS: dict[str, Callable[[object, object, tuple[int, int, int]], int]] = {
    "none": lambda n, s, shape: 0,
    "conv": lambda n, s, shape: s.cout * (s.cin // s.groups) * s.kernel * s.kernel * shape[1] * shape[2],
    "linear": lambda n, s, shape: n.cin * n.cout,
}


#: How an op treats zero operands (what zero folding reads).
ZERO_RULES = ("", "source", "keeps", "sum", "difference")

# -- the two ops whose text depends on the channel counts --------------------------------


def _avgpool2_text(f: dict) -> str:
    """Restriction by 2x2 averaging; channels repeated when the level is wider."""
    pooled = f"F.avg_pool2d({f['0']}, 2, ceil_mode=True)"
    k = f["cout"] // f["cin"]
    return pooled if k == 1 else f"{pooled}.repeat_interleave({k}, 1)"


def _shortcut_a_text(f: dict) -> str:
    """Option A: subsample, zero-pad the new channels evenly on both sides."""
    x, cin, cout = f["p0"], f["cin"], f["cout"]
    if cout % cin:
        extra = cout - cin
        pad = f"{extra // 2}, {extra - extra // 2}"
    else:  # written from the input's channels, so the text is the same at every width
        k = cout // cin - 1
        c = f"{x}.shape[1]" if k == 1 else f"{k} * {x}.shape[1]"
        pad = f"{c} // 2, {c} - {c} // 2" if k == 1 else f"({c}) // 2, {c} - ({c}) // 2"
    return f"F.pad({x}[:, :, ::2, ::2], (0, 0, 0, 0, {pad}))"


def _conv_ctor(s) -> Call:
    args: list = [(None, Num(s.cin, ("cin", "channels"))), (None, Num(s.cout, ("cout", "channels"))), (None, s.kernel)]
    if s.stride != 1:
        args.append(("stride", Num(s.stride, ("stride",), channels=False)))
    if s.kernel // 2:
        args.append(("padding", s.kernel // 2))
    if s.groups != 1:
        args.append(("groups", Num(s.groups, ("groups", "cin", "channels"))))
    args.append(("bias", False))
    return Call("nn.Conv2d", tuple(args))


def _linear_ctor(s) -> Call:
    args = ((None, Num(s.cin, ("cin",))), (None, Num(s.cout, ("classes", "cout"))))
    return Call("nn.Linear", args + (() if s.bias else (("bias", False),)))


def _weighted(name: str, macs: str, spatial: str, pure: bool = True, keeps_channels: bool = False) -> Op:
    zeros = "keeps" if name == "conv" else ""  # no bias: a convolution of zeros is zero
    return Op(name, 1, name, pure, zeros, keeps_channels, spatial, macs, "", "{slot}({0})", "box")


_F = "torch.nn.functional."
_HELP = "mgspec.torch_ops."

_BASE = (
    Op("input", 0, None, False, "", True, "source", "none", "", "", "box"),
    Op("zero", 1, None, True, "source", True, "same", "none", "torch.zeros_like", "torch.zeros_like({0})", "box"),
    _weighted("conv", "conv", "conv"),
    Op("add", 2, None, True, "sum", True, "same", "none", "operator.add", "{0} + {p1}", "ellipse", infix=True),
    Op("sub", 2, None, True, "difference", True, "same", "none", "operator.sub", "{0} - {p1}", "ellipse", infix=True),
    Op("shortcut_a", 1, None, True, "", False, "half", "none", _HELP + "shortcut_a", _shortcut_a_text, "box",
       with_cout=True),
    Op("maxpool", 1, None, True, "", True, "pool3s2", "none", _F + "max_pool2d", "F.max_pool2d({0}, 3, 2, 1)",
       "box", extra=(3, 2, 1)),
    Op("avgpool2", 1, None, True, "", False, "half", "none", _HELP + "avgpool2", _avgpool2_text, "box",
       with_cout=True),
    Op("avgpool", 1, None, True, "", False, "global", "none", "torch.Tensor.mean", "{p0}.mean((2, 3))", "box",
       extra=((2, 3),)),
    _weighted("linear", "linear", "global"),
    Op("output", 1, None, False, "", True, "same", "none", _HELP + "identity", "{0}", "box"),
)  # fmt: skip


def _norm_op(norm) -> Op:
    return _weighted(norm.op, "none", "same", pure=norm.pure, keeps_channels=True)


def _activation_op(act) -> Op:
    zeros = "keeps" if act.keeps_zero else ""
    return Op(act.op, 1, None, True, zeros, True, "same", "none", act.function, act.template, "ellipse")


def _table() -> dict[str, Op]:
    ops = list(_BASE[:3]) + [_norm_op(n) for n in NORMS.values() if n]
    ops += [_activation_op(a) for a in ACTIVATION_CHOICES.values()] + list(_BASE[3:])
    table: dict[str, Op] = {}
    for op in ops:
        missing = [f.name for f in fields(Op) if getattr(op, f.name) is None and f.name != "slot"]
        known = op.spatial in SPATIAL and op.macs in MACS and op.zeros in ZERO_RULES and op.draw in ("box", "ellipse")
        if op.name in table or missing or not known:
            raise ImportError(f"operator {op.name!r}: duplicate, missing {missing}, or an unknown rule")
        table[op.name] = op
    return table


#: The op set, in the order docs/ir.md lists it.
OPS: dict[str, Op] = _table()

#: Weight slot kinds: conv, linear and one per normalisation.
SLOTS: dict[str, SlotKind] = {
    "conv": SlotKind("conv", lambda s: s.cout * (s.cin // s.groups) * s.kernel * s.kernel, _conv_ctor, True),
    **{n.op: SlotKind(n.op, lambda s, n=n: n.weights(s.cout), n.ctor, n.grouped) for n in NORMS.values() if n},
    "linear": SlotKind("linear", lambda s: s.cout * s.cin + (s.cout if s.bias else 0), _linear_ctor, False),
}

if {op.slot for op in OPS.values() if op.slot} != set(SLOTS):
    raise ImportError("every slot kind needs an op that applies it, and every such op a slot kind")

#: Derived sets: what the passes and backends ask of an op.
PURE_OPS = frozenset(name for name, op in OPS.items() if op.pure)
KEEPS_ZERO = frozenset(name for name, op in OPS.items() if op.zeros == "keeps")
ACTIVATIONS = frozenset(a.op for a in ACTIVATION_CHOICES.values())
#: Norm op -> its layer entry.
NORM_OPS = {n.op: n for n in NORMS.values() if n}
